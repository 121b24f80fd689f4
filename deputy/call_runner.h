// How the deputy runs the job's forwarded system calls (rsc/wire.h) through the rsc
// dispatcher: which calls run at once on the event loop and which on a worker thread
// (one may block for as long as a terminal read lasts while the job's other threads go
// on calling), and how a call the job sends twice (it resends a call that was waiting
// when a checkpoint came, the relay resends the calls a broken link left unanswered)
// is answered once, by (thread, seq), instead of run twice (answered.h).
#pragma once

#include "deputy/answered.h"
#include "rsc/dispatch.h"
#include "rsc/write_batch.h"
#include "shadow/mig.capnp.h"

#include <kj/async.h>
#include <kj/timer.h>
#include <kj/function.h>

#include <map>

namespace mig::deputy {

using CallContext = capnp::CallContext<rpc::Deputy::CallParams, rpc::Deputy::CallResults>;

class CallPool;  // worker threads (call_runner.cc)

class CallRunner {
 public:
  // `inputTaken(fd)` is told after a call that took input from `fd` ran, so the
  // readiness watches of that file look again (readiness.h); the call is answered
  // once what it returns resolves.
  explicit CallRunner(kj::Function<kj::Promise<void>(int fd)> inputTaken);
  ~CallRunner();

  // Deputy.call: runs the request in `context` and sets its reply there.
  kj::Promise<void> call(CallContext context);

  // A hop back home (homecoming.h): from now on no call is taken (none is answered);
  // calls waiting on a worker (a read, an accept, a wait) are cancelled, each ending
  // either with what it did before the cancel (its answer kept) or having done
  // nothing (then never answered: the job, back home, makes that call itself).
  // Resolves once no call runs, or after `limitMs` with what still runs left running.
  kj::Promise<void> stopForHomecoming(kj::Timer& timer, uint64_t limitMs);

  // Deputy.cancel: the job's thread `thread` took a signal it handles while its call
  // `seq` waits here. A call waiting on a worker is cancelled as for a homecoming, but
  // answered: EINTR if it had done nothing, else what it did; one not come yet is
  // answered EINTR when it comes (Answered::cancelBeforeRun). Resolves once it no
  // longer waits.
  kj::Promise<void> cancel(uint32_t thread, uint64_t seq, kj::Timer& timer);

  // One of the job's reads that was served where it runs from bytes pushed ahead
  // (pushed_reads.h): runs it now, as asked (its bytes are here), and keeps its answer
  // for the call sent again. Its result; -1 once the job is going home (nothing runs).
  int64_t runTaken(kj::ArrayPtr<const kj::byte> request);

  // Every thread's last answered call that may not have reached it
  // (shim/forward/carried_replies.h): the table the job takes home.
  kj::Array<kj::byte> carriedReplies() const;
  // The reverse, for a deputy back after a failed hop home: a table carriedReplies()
  // made (one that is not is ignored).
  void takeCarried(kj::ArrayPtr<const kj::byte> table);

 private:
  using Key = std::pair<uint32_t, uint64_t>;  // thread, seq

  kj::Promise<void> inputTaken(kj::ArrayPtr<const kj::byte> request);
  kj::Maybe<kj::Array<kj::byte>> refusedWrite(const rsc::RequestHeader& h);
  void ran(const rsc::RequestHeader& h, kj::ArrayPtr<const kj::byte> reply);

  kj::Function<kj::Promise<void>(int fd)> inputTaken_;
  rsc::Dispatcher dispatcher_;
  kj::Own<CallPool> pool_;
  std::map<Key, kj::ForkedPromise<void>> running_;
  Answered answered_;                  // what ran: a call sent again is answered from it
  // Write-behind's failure rule for the batches already on their way when one failed
  // (the relay keeps it for those it has not sent: rsc::WriteFailures).
  rsc::WriteFailures writeFailures_;
  bool stopped_ = false;               // stopForHomecoming: no call is taken any more
};

}  // namespace mig::deputy
