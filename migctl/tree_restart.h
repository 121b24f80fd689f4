// `migctl restart` of a process tree's image (format version 2): the restart
// process stays the root's parent and waits for it; each member is forked by its
// own parent member with the PID it had (clone3 set_tid), put into its session and
// process group, and then becomes itself as a single process does (exec of
// mig-restore with its own plan). Zombies are forked and end at once with their
// status. Pipes between members are made once, before the first fork, and
// inherited by all; so is the memory they share (resources/shared_memory.h).
#pragma once

#include "image/file_reader.h"
#include "image/plan_builder.h"
#include "resources/caller_fds.h"
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"
#include "shim/forward/forward_config.h"

#include <kj/array.h>
#include <kj/string.h>
#include <kj/vector.h>

namespace mig::migctl {

// What shadowd passes for a job that migrated here.
struct MigratedOptions {
  bool migrated = false;
  kj::Maybe<kj::String> relay;
  uint64_t jobId = 0;
  kj::Array<kj::byte> token;
  kj::Vector<kj::String> localPaths;
  int64_t realtimeOffsetNs = 0;
  uint32_t network = forward::kNetworkHome;
  int gateFd = -1;  // --gate-fd: wait there for shadowd's commit before running (restart_command.cc)
  int postcopyTimeoutMs = 0;  // --postcopy MS: the image's postcopyPages come over the gate (0: none)
  bool imageOnGate = false;   // --image-on-gate: started before the image is complete; 'I' on the gate says it is
  int pageServer = -1;        // with it: a page server forked then, waiting for its work (resources/lazy_pages.h)
  // --homecoming: a hop back home, run by the deputy in place (deputy/homecoming.h):
  // the fds this process holds are the job's home fds; carriedFd: the deputy's answers.
  bool homecoming = false;
  int carriedFd = -1;
  // The deputy's come-back table (deputy/homecoming.h): a failure before the restart
  // touches the process execs the deputy again from it (comeBackOrDie). Closed (-1) at
  // that point, with the ticket's listener it names.
  int comeBackFd = -1;
  // --home-gate: a tree's hop home, connected to as the restore begins; the restorer
  // waits on it for the tree's go (shadow/home_gate.h). Closed on a come-back.
  kj::String homeGate;
  int homeGateFd = -1;
};

// A member's part in its tree's restart.
struct TreeMemberRestart {
  resources::TreePipes pipes;
  // (Mutable: a migrated member's restore moves them out of its fds' way, and a
  // failure after that must still be said on the right one.)
  mutable int readyFd;  // tells the restart process this member is ready
  mutable int goFd;     // EOF when every member is ready
  kj::ArrayPtr<const image::RegionFile> sharedRegions;  // mapped from the tree's shared objects
  // A migrated job with children born away (restartBornAway): they go on a 'G' each
  // on goFd (a socket), which the job sends once its gate said go (EOF: the hop was
  // called off). Back home its restorer sends them at its point of no return instead.
  bool goOnByte = false;
  uint32_t waiting = 0;  // the job's part: how many wait on goFd (its readyFd is -1)
  kj::Array<pid_t> children;  // the job's part back home: its descendants born away (zombies too)
  // Says so and waits for the whole tree; throws when the restart was called off.
  void ready() const;
  // The job's part, past its gate: lets the children born away go.
  void release() const;
};

// Builds the plan, puts the fds in place and execs mig-restore: `img` (one process,
// or one member after keepOnlyMember) becomes this process. Throws on any error.
// `lazy` (resources/lazy_pages.h): the big anonymous regions are filled by a page
// server as the job touches them; the caller has verified nothing yet, and
// `dataVerified` says whether the data needs no check (shadowd checked it).
[[noreturn]] void becomeRestored(image::FileReader& img, const char* path, const resources::FileRestoreOptions& options,
                                 const resources::CallerFds& caller, const MigratedOptions& migrated,
                                 const TreeMemberRestart* tree, bool lazy = false, bool dataVerified = false);

// The whole tree, from a checked image. Returns the root's exit status (128+N
// after death by signal N, as a shell says it).
int restartTree(image::FileReader& img, const char* path, const resources::FileRestoreOptions& options,
                const resources::CallerFds& caller);

// A job that migrated here with its children born away (issue 12): its image is a
// tree whose root is the job. This process becomes the job, as for one process; first
// it makes the pipes between them and forks each child with its PID of the host it
// came from (clone3 set_tid: its virtual PID, kAwayPidBase + that PID, is unchanged),
// each child restoring itself with the job's `migrated` options (it forwards through
// the job's deputy) up to ready, then waiting for the job's gate.
// Back home (--homecoming, step 3) the same, the children with homecoming options of
// their own, the job's home fds kept as for one process (docs/design.md, "Children
// born away").
[[noreturn]] void restartBornAway(image::FileReader& img, const char* path, const resources::FileRestoreOptions& options,
                                  const resources::CallerFds& caller, const MigratedOptions& migrated);

// Back home, a come-back before the job's restorer ran (comeBackOrDie): the job's
// descendants born away killed (none has run anything of its own yet), their go socket
// closed, and the job's children among them reaped, so that nothing of them stays at
// home (no zombie the deputy would show its job). The restorer does the same on its
// own come-back (restore/restorer.cc).
void endBornAwayAtHome();

// Throws what restartBornAway would refuse (shared objects, a child's PID taken here):
// phase one of a hop home says it before the commit.
void checkBornAway(image::FileReader& img);

}  // namespace mig::migctl
