// What the deputy has answered of the job's calls, so that a call sent to it again is
// answered from the time it ran instead of running twice. A call comes again when the
// link it came on broke before its answer got back (the relay sends it again on the
// resumed link, shadow/direct_link.h) or when its thread was checkpointed while it
// waited (the job sends it again from where it resumes).
//
// What names a call: its thread and that thread's sequence number (rsc/wire.h). A
// thread has one call waiting at a time, so its last answered call is the only one it
// can send again. Pipelined writes are the job's, not a thread's: the relay has up to
// rsc::kWritesInFlight batches of them on their way at a time (shadow/job_calls.h) and
// sends only those again, so the last batches that ran are the only ones that can
// come twice; they are kept apart from their threads' waited calls, which may finish
// before them, and named by their order number besides (a program a process exec'd
// numbers its calls from 1 again under the same thread id; the order goes on).
#pragma once

#include "rsc/wire.h"
#include "rsc/write_batch.h"

#include <kj/array.h>

#include <deque>
#include <map>

namespace mig::deputy {

class Answered {
 public:
  struct Kept {
    uint64_t seq;
    kj::Array<kj::byte> reply;
  };

  // Whether `h` names a call that ran already; then `reply` is what it answered.
  bool ran(const rsc::RequestHeader& h, kj::ArrayPtr<const kj::byte>& reply) const;

  // `h` ran and answered `reply`.
  void done(const rsc::RequestHeader& h, kj::Array<kj::byte> reply);
  // The same for a read served from pushed bytes and taken here late (CallRunner::
  // runTaken): kept only if its thread has sent no newer call since.
  void takenLate(const rsc::RequestHeader& h, kj::Array<kj::byte> reply);

  // A cancel (Deputy.cancel) of thread `thread`'s call `seq`, which has not come yet
  // (the relay holds a call until the job's writes before it have run; the cancel
  // waits for nothing): the call is taken as answered `reply` (EINTR), so when it
  // comes it does not run. Not if the thread's last answered call is that one or a
  // later one (a cancel that crossed the call's answer): false then.
  bool cancelBeforeRun(uint32_t thread, uint64_t seq, kj::Array<kj::byte> reply);

  // A deputy back after a failed hop home (homecoming.h) takes the answers its
  // predecessor carried: thread `thread`'s last answered call was `seq`.
  void carried(uint32_t thread, uint64_t seq, kj::Array<kj::byte> reply) { last_[thread] = Kept{seq, kj::mv(reply)}; }

  // Each thread's last answered call that waited for its answer (the carried replies a
  // job takes home, shim/forward/carried_replies.h).
  const std::map<uint32_t, Kept>& lastByThread() const { return last_; }

 private:
  std::map<uint32_t, Kept> last_;  // by thread
  struct Batch {
    uint64_t order;
    uint32_t thread;
    Kept answer;
  };
  std::deque<Batch> writes_;  // the last pipelined batches that ran, oldest first
};

}  // namespace mig::deputy
