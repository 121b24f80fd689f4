// The deputy's forwarded calls: where each runs, and answered once (call_runner.h).
#include "deputy/call_runner.h"

#include "deputy/log.h"
#include "deputy/own_fds.h"
#include "rsc/call_policy.h"
#include "rsc/forward_table.h"
#include "rsc/wire.h"

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>
#include <fcntl.h>
#include <sys/stat.h>

namespace mig::deputy {
namespace {

// How the deputy runs a forwarded call (rsc::deputyRuns), from what its fd is.
using rsc::Runs;

Runs howToRun(kj::ArrayPtr<const kj::byte> request) {
  rsc::RequestHeader h;
  if (request.size() < sizeof(h)) return Runs::Here;  // malformed: answered at once
  memcpy(&h, request.begin(), sizeof(h));
  const rsc::Row* row = rsc::rowById(h.call);
  if (row == nullptr) return Runs::Here;
  rsc::FdKind fd = rsc::FdKind::None;
  struct stat st;
  if (row->fdArg >= 0 && fstat(static_cast<int>(h.args[row->fdArg]), &st) == 0) {
    const int fl = fcntl(static_cast<int>(h.args[row->fdArg]), F_GETFL);
    fd = S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode) ? rsc::FdKind::File
         : fl >= 0 && (fl & O_NONBLOCK)                                    ? rsc::FdKind::NonBlockingStream
                                                                           : rsc::FdKind::Stream;
  }
  return rsc::deputyRuns(*row, fd, (h.flags & rsc::kNoReply) != 0);
}

// Runs one call; MIG_LOG gets a line for it (log.h).
kj::Array<kj::byte> runLogged(rsc::Dispatcher& dispatcher, kj::ArrayPtr<const kj::byte> request) {
  auto reply = dispatcher.call(request);
  if (logging()) logCall(request, reply);
  return reply;
}

}  // namespace

// Runs forwarded calls on threads of their own: a call may block (a read on the
// terminal or a pipe) while the job's other threads go on making calls. A worker is
// started whenever none is idle; idle ones wait for the next call.
class CallPool {
 public:
  explicit CallPool(rsc::Dispatcher& dispatcher) : dispatcher_(dispatcher) {}
  ~CallPool();

  kj::Promise<kj::Array<kj::byte>> run(kj::Array<kj::byte> request);

 private:
  using Done = kj::Own<kj::CrossThreadPromiseFulfiller<kj::Array<kj::byte>>>;
  struct Job {
    kj::Array<kj::byte> request;
    Done done;
  };

  void work();

  rsc::Dispatcher& dispatcher_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  std::vector<std::thread> threads_;
  int idle_ = 0;
  bool stopping_ = false;
};

CallPool::~CallPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.detach();  // a worker may be blocked in a call: the process ends anyway
}

kj::Promise<kj::Array<kj::byte>> CallPool::run(kj::Array<kj::byte> request) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<kj::Array<kj::byte>>();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back({kj::mv(request), kj::mv(paf.fulfiller)});
    if (idle_ == 0) threads_.emplace_back([this]() { work(); });
  }
  wake_.notify_one();
  return kj::mv(paf.promise);
}

void CallPool::work() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    ++idle_;
    wake_.wait(lock, [this]() { return stopping_ || !queue_.empty(); });
    --idle_;
    if (stopping_) return;
    Job job = kj::mv(queue_.front());
    queue_.pop_front();
    lock.unlock();
    job.done->fulfill(runLogged(dispatcher_, job.request));
    lock.lock();
  }
}

CallRunner::CallRunner(kj::Function<void(int fd)> inputTaken)
    : inputTaken_(kj::mv(inputTaken)), pool_(kj::heap<CallPool>(dispatcher_)) {
  dispatcher_.keepOwnFds(isOwn);  // the job's numbers never take the deputy's fds
}

CallRunner::~CallRunner() = default;

kj::Promise<void> CallRunner::call(CallContext context) {
  auto request = context.getParams().getRequest();
  const Runs runs = howToRun(request);
  if (runs == Runs::Here) {
    context.getResults().setReply(runLogged(dispatcher_, request));
    return kj::READY_NOW;
  }
  // A call the job's thread may send twice, with the same thread and seq, must get
  // the result of the call already running (or done), not run twice: a second read
  // would lose what the first one read.
  rsc::RequestHeader h;
  memcpy(&h, request.begin(), sizeof(h));
  const Key key{h.thread, h.seq};
  auto running = running_.find(key);
  if (running == running_.end()) {
    auto done = lastDone_.find(h.thread);
    if (done != lastDone_.end() && done->second.seq == h.seq) {
      context.getResults().setReply(done->second.reply);
      return kj::READY_NOW;
    }
    if (runs == Runs::HereOnce) {
      auto& last = lastDone_[h.thread] = Done{h.seq, runLogged(dispatcher_, request)};
      context.getResults().setReply(last.reply);
      inputTaken(request);
      return kj::READY_NOW;
    }
    auto finished = pool_->run(kj::heapArray<kj::byte>(request)).then([this, key](kj::Array<kj::byte> reply) {
      lastDone_[key.first] = Done{key.second, kj::mv(reply)};
    });
    running = running_.emplace(key, finished.fork()).first;
  }
  return running->second.addBranch().then([this, key, context]() mutable {
    context.getResults().setReply(lastDone_[key.first].reply);
    running_.erase(key);
    inputTaken(context.getParams().getRequest());
  });
}

void CallRunner::inputTaken(kj::ArrayPtr<const kj::byte> request) {
  if (request.size() < sizeof(rsc::RequestHeader)) return;
  rsc::RequestHeader h;
  memcpy(&h, request.begin(), sizeof(h));
  const rsc::Row* row = rsc::rowById(h.call);
  if (row == nullptr || !rsc::rearmsReadiness(*row)) return;
  inputTaken_(static_cast<int>(h.args[row->fdArg]));
}

}  // namespace mig::deputy
