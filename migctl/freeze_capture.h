// The part of a checkpoint and of a migration hop that is the same: freeze the
// process behind a ControlClient and write its image. The process stays frozen; the
// caller then resumes it, ends it, or makes it the deputy.
#pragma once

#include "image/byte_io.h"
#include "image/writer.h"
#include "resources/copy_before_write.h"
#include "resources/precopy.h"
#include "resources/process_capture.h"
#include "resources/process_tree.h"

#include <kj/vector.h>
#include <chrono>
#include <map>
#include "migctl/control_client.h"

namespace mig::migctl {

// forMigration: the image goes to another host (see resources::ProcPageSource).
// maxDeletedFileBytes: resources::CaptureOptions.
resources::CaptureStats freezeAndCapture(ControlClient& ctl, int timeoutSeconds, bool forMigration,
                                     image::ByteSink& out,
                                     uint64_t maxDeletedFileBytes = resources::CaptureOptions::kDefaultMaxDeletedFileBytes);

// The second half of freezeAndCapture, for a process parked already (`reply` from
// ControlClient::freeze or awaitFreeze): the members of a tree that moves are all
// parked before any is captured (shadow/send_command.cc).
resources::CaptureStats captureFrozen(ControlClient& ctl, const control::Reply& reply, bool forMigration,
                                      image::ByteSink& out,
                                      uint64_t maxDeletedFileBytes = resources::CaptureOptions::kDefaultMaxDeletedFileBytes);

// Concurrent checkpoint (resources/copy_before_write.h): freezes the process only to take
// its non-memory state and write-protect its memory through `uffd` (from
// ControlClient::copyOnWrite, owned from now on), resumes it, and writes its memory as
// it was at the freeze while it runs. Returns false, with the image unusable and the
// reason in `why`, when the job gave memory back before it was written out; the caller
// then starts again without concurrency. frozenMs: how long the job was frozen.
struct ConcurrentResult {
  resources::CaptureStats stats{};
  resources::CopyBeforeWriteStats pages;
  double frozenMs = 0;
  uint64_t madeHugeBytes = 0;  // before the freeze (resources::collapseForProtection)
  bool ok = false;
  kj::String why;
};
// `mark`: the freeze's breakdown, as CaptureOptions::mark ("freeze" as it begins).
ConcurrentResult freezeAndCaptureConcurrently(ControlClient& ctl, int timeoutSeconds, int uffd, image::ByteSink& out,
                                              uint64_t maxDeletedFileBytes,
                                              kj::Function<void(const char*)>* mark = nullptr);

// Pre-copy's end (resources/precopy.h): freezes the process, takes the last look at
// what it wrote, and finishes the image `w` that the rounds began.
resources::CaptureStats freezeAndFinish(ControlClient& ctl, int timeoutSeconds, resources::PageSource& memory,
                                        resources::Precopy& precopy, image::ImageWriter& w);
// Its second half, for a process parked already (the members of a tree that moves
// pre-copy are all parked before any is finished, shadow/send_command.cc). `mark`:
// CaptureOptions::mark, also told when the last look ends ("final-look").
resources::CaptureStats finishFrozen(ControlClient& ctl, const control::Reply& reply, resources::PageSource& memory,
                                     resources::Precopy& precopy, image::ImageWriter& w,
                                     kj::Function<void(const char*)>* mark = nullptr);

// Whether libmig.so is mapped in process `pid`: one between fork and its control
// thread's start, or in exec, does not answer on its control socket for a moment.
bool shimLoaded(pid_t pid);

// A whole tree (root and descendants, resources/process_tree.h), frozen together.
class FrozenTree {
 public:
  // Lists the tree of `root`'s process and connects to every live member's shim
  // before anything is frozen: a member not under mig refuses the whole tree with
  // one line naming it. Then parks them all at once, and any child a member forked
  // meanwhile, until the tree holds still. `mark`: the freeze's breakdown, as
  // CaptureOptions::mark ("freeze" as it begins, "park", "look").
  FrozenTree(ControlClient& root, int timeoutSeconds, kj::Function<void(const char*)>* mark = nullptr);
  // A tree of one process: the caller takes the single-process path (image
  // version-compatible with what it always was).
  // (Once frozen, a tree whose children all ended meanwhile is captured as one
  // process by capture(); single() is then false: the root is parked already.)
  bool single() const { return members_.size() == 1 && !froze_; }
  size_t size() const { return members_.size(); }
  // When the first member was asked to park: where the tree's freeze begins.
  std::chrono::steady_clock::time_point frozenAt() const { return frozenAt_; }
  size_t liveCount() const;
  resources::CaptureStats capture(image::ByteSink& out, const resources::CaptureOptions& options = {});
  // The same image, concurrently (resources::captureTreeConcurrently): `uffds` maps
  // each member's kernel PID to its copy-on-write userfaultfd, taken before the freeze
  // (all closed here). Resumes the tree once every member's state is taken and its
  // memory write-protected, at `resumedAt`. Null, the tree still frozen and nothing
  // written, when a member has none (it started since): capture() it then.
  kj::Maybe<resources::ConcurrentTreeResult> captureConcurrently(
      image::ByteSink& out, const resources::CaptureOptions& options, std::map<pid_t, int>& uffds,
      std::chrono::steady_clock::time_point& resumedAt);
  // After a complete image: every member goes on, or ends (exit status 86),
  // children before their parents; waits (bounded) until the ended ones are gone.
  void resume();
  void exitAll(int timeoutSeconds);
  // exitAll without the wait: a hop's commit, the tree runs on another host now.
  void exitEach();
  // Sends `sig` to every live member (a hop home keeps them stopped until home's answer).
  void signalEach(int sig);

 private:
  struct Member {
    resources::TreeProcess proc;
    ControlClient* ctl;              // null for a zombie
    kj::Own<ControlClient> owned;    // every member's but the root's
    kj::Own<control::Block> block;
  };
  void connect(const resources::TreeProcess& p, ControlClient* rootCtl);
  kj::Own<ControlClient> reach(const resources::TreeProcess& p);
  void request(Member& m);
  void park(Member& m, int timeoutSeconds);
  kj::Vector<Member> members_;
  pid_t root_;
  bool froze_ = false;
  std::chrono::steady_clock::time_point frozenAt_;
};

}  // namespace mig::migctl
