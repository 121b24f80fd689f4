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
  // --homecoming: a hop back home, run by the deputy in place (deputy/homecoming.h):
  // the fds this process holds are the job's home fds; carriedFd: the deputy's answers.
  bool homecoming = false;
  int carriedFd = -1;
};

// A member's part in its tree's restart.
struct TreeMemberRestart {
  resources::TreePipes pipes;
  int readyFd;  // tells the restart process this member is ready
  int goFd;     // EOF when every member is ready
  kj::ArrayPtr<const image::RegionFile> sharedRegions;  // mapped from the tree's shared objects
  // Says so and waits for the whole tree; throws when the restart was called off.
  void ready() const;
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

}  // namespace mig::migctl
