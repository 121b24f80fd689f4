// The deputy's forwarded calls: where each runs, and answered once (call_runner.h).
#include "deputy/call_runner.h"

#include "deputy/log.h"
#include "deputy/own_fds.h"
#include "deputy/signals.h"
#include "deputy/stream_write.h"
#include "rsc/call_policy.h"
#include "rsc/forward_table.h"
#include "rsc/wire.h"
#include "shim/forward/carried_replies.h"

#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

namespace mig::deputy {
namespace {

// How the deputy runs a forwarded call (rsc::deputyRuns), from what its fd is.
using rsc::Runs;

// Where a call runs, and the fd it names as fstat saw it (mode 0: none, or not open).
struct Placed {
  Runs runs = Runs::Here;
  int fd = -1;
  mode_t mode = 0;
};

Placed howToRun(kj::ArrayPtr<const kj::byte> request) {
  Placed placed;
  rsc::RequestHeader h;
  if (request.size() < sizeof(h)) return placed;  // malformed: answered at once
  memcpy(&h, request.begin(), sizeof(h));
  const rsc::Row* row = rsc::rowById(h.call);
  if (row == nullptr) return placed;
  rsc::FdKind fd = rsc::FdKind::None;
  struct stat st;
  const int n = row->fdArg >= 0 ? static_cast<int>(h.args[row->fdArg]) : -1;
  if (row->fdArg >= 0 && fstat(n, &st) == 0) {
    placed.fd = n;
    placed.mode = st.st_mode;
    // The flags matter only for a stream: a file's call is not asked for them (one
    // system call less on every forwarded call to a file).
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode)) {
      fd = rsc::FdKind::File;
    } else {
      const int fl = fcntl(n, F_GETFL);
      fd = fl >= 0 && (fl & O_NONBLOCK) ? rsc::FdKind::NonBlockingStream : rsc::FdKind::Stream;
    }
  }
  placed.runs = rsc::deputyRuns(*row, fd, (h.flags & rsc::kNoReply) != 0);
  return placed;
}

// The answer, in a Cap'n Proto message sized for it: without the size, each answer's
// message starts with capnp's 8 KiB first segment, zeroed and freed on every call.
void answer(CallContext& context, kj::ArrayPtr<const kj::byte> reply) {
  context.getResults(capnp::MessageSize{reply.size() / sizeof(capnp::word) + 4, 0}).setReply(reply);
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
// started whenever none is idle; idle ones wait for the next call. A hop back home
// cancels the calls that wait (cancelAll), a signal the job handles the one call its
// thread waits in (cancel): kCancelSignal, which only a worker running such a call
// lets in, ends the system call with EINTR if it has done nothing yet.
class CallPool {
 public:
  using Key = std::pair<uint32_t, uint64_t>;  // thread, seq

  // What became of a call: its reply (none if cancelled before it began), and whether
  // a cancel ended it having done nothing.
  struct Outcome {
    kj::Array<kj::byte> reply;
    bool cancelled;
  };

  explicit CallPool(rsc::Dispatcher& dispatcher);
  ~CallPool();

  kj::Promise<Outcome> run(kj::Array<kj::byte> request);

  // Cancels every call that waits and may be cancelled (not a pipelined write, which
  // the job counts as done, nor a connect, whose EINTR would leave it going on), again
  // each time asked (a signal that came just before its call began waiting is lost);
  // returns how many calls still run.
  size_t cancelAll();

  // Cancels the call `key` if it waits and may be cancelled (as cancelAll); true while
  // it still runs on a worker (the signal may have come before it began to wait: ask
  // again).
  bool cancel(Key key);

 private:
  using Done = kj::Own<kj::CrossThreadPromiseFulfiller<Outcome>>;
  struct Job {
    Key key;
    kj::Array<kj::byte> request;
    Done done;
  };
  struct Worker {
    pthread_t thread{};
    Key key;
    bool busy = false;
    bool cancellable = false;
    bool cancelled = false;
  };

  void work(Worker& me);
  void kick(Worker& w);  // with mutex_ held

  rsc::Dispatcher& dispatcher_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  std::vector<std::thread> threads_;
  std::deque<Worker> workers_;  // stable addresses, one per thread
  int idle_ = 0;
  bool stopping_ = false;
};

namespace {

// The shim's checkpoint signal, which the deputy never forwards (signals.cc); blocked
// but in a worker running a call that may be cancelled.
constexpr int kCancelSignal = 63;

void onCancel(int) {}

bool interrupted(const kj::Array<kj::byte>& reply) {
  rsc::ReplyHeader h;
  if (reply.size() < sizeof(h)) return false;
  memcpy(&h, reply.begin(), sizeof(h));
  return h.result == -1 && h.error == EINTR;
}

// The answer of a call cancelled before it began: EINTR, nothing done.
kj::Array<kj::byte> interruptedReply(uint64_t seq) {
  const rsc::ReplyHeader h = rsc::failureReply(seq, EINTR);
  return kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(&h), sizeof(h));
}

bool cancellable(kj::ArrayPtr<const kj::byte> request) {
  rsc::RequestHeader h;
  if (request.size() < sizeof(h)) return false;
  memcpy(&h, request.begin(), sizeof(h));
  return !(h.flags & rsc::kNoReply) && h.call != static_cast<uint32_t>(rsc::CallId::Connect);
}

// A read of the job's terminal from a background process group, or a write to it when
// the terminal has TOSTOP set: the kernel would send SIGTTIN (SIGTTOU) to the group and
// make the call again once continued (rsc::terminalStopSignal). Run here a read would
// fail EIO and a write go on at once (the deputy blocks every signal), so the worker
// does the kernel's part: that signal to the group at home, which the deputy passes on
// to the job (stopping it and itself, signals.cc), again after each CONT, until the
// group is in the foreground; then the call runs. As the kernel's: a job that ignores
// or blocks the signal (rsc::kNoTtin, kNoTtou) has its read fail EIO and its write go
// on, an orphaned group gets EIO. EINTR if cancelled. nullptr: go on with the call.
kj::Maybe<kj::Array<kj::byte>> waitForeground(kj::ArrayPtr<const kj::byte> request, const bool& cancelled,
                                              std::mutex& mutex) {
  rsc::RequestHeader h;
  if (request.size() < sizeof(h)) return nullptr;
  memcpy(&h, request.begin(), sizeof(h));
  const rsc::Row* row = rsc::rowById(h.call);
  const int sig = row == nullptr || row->fdArg < 0 ? 0 : rsc::terminalStopSignal(*row);
  if (sig == 0) return nullptr;
  const int fd = static_cast<int>(h.args[row->fdArg]);
  const bool ignored = (h.flags & rsc::kNoTtin) != 0;
  auto eio = [&h]() {
    const rsc::ReplyHeader r = rsc::failureReply(h.seq, EIO);
    return kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(&r), sizeof(r));
  };
  uint32_t sentAfter = continuedCount() + 1;  // the CONTs counted when the signal went; none yet
  for (;;) {
    const pid_t foreground = tcgetpgrp(fd);  // -1 unless fd is the deputy's terminal
    if (foreground <= 0 || foreground == getpgrp()) return nullptr;
    if (sig == SIGTTOU) {
      struct termios t;
      if (ignored || tcgetattr(fd, &t) != 0 || !(t.c_lflag & TOSTOP)) return nullptr;
    }
    if (sentAfter != continuedCount()) {
      if (ignored || groupOrphaned()) return eio();
      sentAfter = continuedCount();
      kill(-getpgrp(), sig);
    }
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, nullptr);  // the cancel signal ends it early
    std::lock_guard<std::mutex> lock(mutex);
    if (cancelled) return interruptedReply(h.seq);
  }
}

}  // namespace

CallPool::CallPool(rsc::Dispatcher& dispatcher) : dispatcher_(dispatcher) {
  struct sigaction sa {};
  sa.sa_handler = onCancel;  // no SA_RESTART: the waiting system call ends with EINTR
  sigemptyset(&sa.sa_mask);
  sigaction(kCancelSignal, &sa, nullptr);
}

CallPool::~CallPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.detach();  // a worker may be blocked in a call: the process ends anyway
}

kj::Promise<CallPool::Outcome> CallPool::run(kj::Array<kj::byte> request) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<Outcome>();
  rsc::RequestHeader h;
  memcpy(&h, request.begin(), sizeof(h));  // CallRunner::call took only whole headers
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back({Key{h.thread, h.seq}, kj::mv(request), kj::mv(paf.fulfiller)});
    if (idle_ == 0) {
      Worker& w = workers_.emplace_back();
      threads_.emplace_back([this, &w]() { work(w); });
    }
  }
  wake_.notify_one();
  return kj::mv(paf.promise);
}

size_t CallPool::cancelAll() {
  std::deque<Job> notStarted;
  size_t running = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    notStarted.swap(queue_);
    for (auto& w : workers_) {
      if (!w.busy) continue;
      ++running;
      kick(w);
    }
  }
  for (auto& job : notStarted) job.done->fulfill(Outcome{nullptr, true});
  return running;
}

bool CallPool::cancel(Key key) {
  kj::Maybe<Job> notStarted;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& w : workers_) {
      if (!w.busy || w.key != key) continue;
      kick(w);
      return w.cancellable;
    }
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (it->key != key) continue;
      notStarted = kj::mv(*it);
      queue_.erase(it);
      break;
    }
  }
  KJ_IF_MAYBE(job, notStarted) { job->done->fulfill(Outcome{nullptr, true}); }
  return false;
}

void CallPool::kick(Worker& w) {
  if (!w.cancellable) return;
  w.cancelled = true;
  pthread_kill(w.thread, kCancelSignal);
}

void CallPool::work(Worker& me) {
  sigset_t cancel;
  sigemptyset(&cancel);
  sigaddset(&cancel, kCancelSignal);
  std::unique_lock<std::mutex> lock(mutex_);
  me.thread = pthread_self();
  for (;;) {
    ++idle_;
    wake_.wait(lock, [this]() { return stopping_ || !queue_.empty(); });
    --idle_;
    if (stopping_) return;
    Job job = kj::mv(queue_.front());
    queue_.pop_front();
    me.busy = true;
    me.key = job.key;
    me.cancellable = cancellable(job.request);
    me.cancelled = false;
    const bool mayCancel = me.cancellable;
    lock.unlock();
    // Let in only while a call that may be cancelled runs: a pipelined write must
    // never see EINTR (nor a stray signal 63 left pending from the job's freeze).
    if (mayCancel) pthread_sigmask(SIG_UNBLOCK, &cancel, nullptr);
    kj::Array<kj::byte> reply;
    KJ_IF_MAYBE(r, waitForeground(job.request, me.cancelled, mutex_)) {
      reply = kj::mv(*r);
    } else {
      reply = runLogged(dispatcher_, job.request);
    }
    // Only kCancelSignal reaches a worker: an EINTR without a cancel came from a stray
    // one (someone's kill -63), and the call goes on as SA_RESTART would have it.
    for (;;) {
      if (!interrupted(reply)) break;
      lock.lock();
      bool cancelled = me.cancelled;
      lock.unlock();
      if (cancelled) break;
      reply = runLogged(dispatcher_, job.request);
    }
    if (mayCancel) pthread_sigmask(SIG_BLOCK, &cancel, nullptr);
    lock.lock();
    const bool cancelled = me.cancelled && interrupted(reply);
    me.busy = false;
    lock.unlock();
    job.done->fulfill(Outcome{kj::mv(reply), cancelled});
    lock.lock();
  }
}

CallRunner::CallRunner(kj::Function<kj::Promise<void>(int fd)> inputTaken)
    : inputTaken_(kj::mv(inputTaken)), pool_(kj::heap<CallPool>(dispatcher_)) {
  dispatcher_.keepOwnFds(isOwn);  // the job's numbers never take the deputy's fds
}

CallRunner::~CallRunner() = default;

kj::Promise<void> CallRunner::call(CallContext context) {
  // Going home (stopForHomecoming): the job whose call this is was frozen and has ended
  // where it ran; the call is its own to make, back home.
  if (stopped_) return kj::NEVER_DONE;
  auto request = context.getParams().getRequest();
  if (request.size() < sizeof(rsc::RequestHeader)) {
    answer(context, runLogged(dispatcher_, request));  // the dispatcher says what is wrong
    return kj::READY_NOW;
  }
  // A call sent twice, with the same thread and seq (a link that broke before its
  // answer got back, a thread checkpointed while it waited), gets the result of the
  // call already running or done, never runs twice: a second write would write twice,
  // a second read lose what the first read (answered.h).
  rsc::RequestHeader h;
  memcpy(&h, request.begin(), sizeof(h));
  const Key key{h.thread, h.seq};
  auto running = running_.find(key);
  if (running == running_.end()) {
    kj::ArrayPtr<const kj::byte> kept;
    if (answered_.ran(h, kept)) {
      if (logging()) {
        log(kj::str("call ", h.call, " (thread ", h.thread, ", seq ", h.seq, ") came again: answered from its run"));
      }
      answer(context, kept);
      return kj::READY_NOW;
    }
    KJ_IF_MAYBE(refused, refusedWrite(h)) {
      answer(context, *refused);
      answered_.done(h, kj::mv(*refused));
      return kj::READY_NOW;
    }
    const Placed placed = howToRun(request);
    kj::Maybe<WriteNow> now;
    if (placed.runs == Runs::Worker && (S_ISSOCK(placed.mode) || S_ISFIFO(placed.mode))) {
      now = writeNow(request, placed.fd);
    }
    kj::Maybe<kj::Array<kj::byte>> doneHere;
    if (placed.runs != Runs::Worker) {
      doneHere = runLogged(dispatcher_, request);
    } else KJ_IF_MAYBE(w, now) {
      if (w->done) {
        if (logging()) logCall(request, w->reply);
        doneHere = kj::mv(w->reply);
      }
    }
    KJ_IF_MAYBE(reply, doneHere) {
      ran(h, *reply);
      answer(context, *reply);
      answered_.done(h, kj::mv(*reply));
      if (placed.runs == Runs::HereOnce) return inputTaken(request);
      return kj::READY_NOW;
    }
    auto outcome = [&]() -> kj::Promise<CallPool::Outcome> {
      KJ_IF_MAYBE(w, now) {
        if (w->written > 0) {
          // The kernel took part at once: the rest blocks on a worker, the answer is both.
          return pool_->run(kj::mv(w->rest)).then([h, written = w->written](CallPool::Outcome o) {
            return CallPool::Outcome{joinedReply(h, written, kj::mv(o.reply)),
                                     (h.flags & rsc::kNoReply) != 0 && o.cancelled};
          });
        }
      }
      return pool_->run(kj::heapArray<kj::byte>(request));
    }();
    auto finished = kj::mv(outcome).then([this, h](CallPool::Outcome o) -> kj::Promise<void> {
      // Cancelled for a hop back home, having done nothing: never answered here.
      if (o.cancelled && stopped_) return kj::NEVER_DONE;
      // Cancelled for a signal (cancel): answered EINTR, or with what it did first.
      // (A pipelined write that worked has an empty reply: nothing to answer.)
      const bool neverBegun = o.cancelled && o.reply == nullptr;
      if (!neverBegun) ran(h, o.reply);
      answered_.done(h, neverBegun ? interruptedReply(h.seq) : kj::mv(o.reply));
      return kj::READY_NOW;
    });
    running = running_.emplace(key, finished.fork()).first;
  }
  return running->second.addBranch().then([this, h, key, context]() mutable {
    kj::ArrayPtr<const kj::byte> kept;
    if (answered_.ran(h, kept)) answer(context, kept);
    running_.erase(key);
    return inputTaken(context.getParams().getRequest());
  });
}

// A batch of pipelined writes to an fd whose earlier batch failed, sent before the
// relay heard of it (it has several on their way): it fails alike, unrun, until the
// program knows (kFailureSeen) or the fd is closed. Its answer, or nullptr: run it.
kj::Maybe<kj::Array<kj::byte>> CallRunner::refusedWrite(const rsc::RequestHeader& h) {
  if (!(h.flags & rsc::kNoReply)) return nullptr;
  rsc::PipelinedWrite w{};
  w.fd = h.args[0];
  w.failureSeen = (h.flags & rsc::kFailureSeen) != 0;
  const int32_t error = writeFailures_.before(w);
  if (error == 0) return nullptr;
  if (logging()) log(kj::str("pipelined write to fd ", w.fd, " (seq ", h.seq, ") not run: an earlier one failed"));
  const rsc::ReplyHeader r = rsc::failureReply(h.seq, error);
  return kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(&r), sizeof(r));
}

// What a call that ran means for the failure rule: a pipelined write answered (a
// failure: its reply), a close or a dup3 over an fd (the number may be another file's next).
void CallRunner::ran(const rsc::RequestHeader& h, kj::ArrayPtr<const kj::byte> reply) {
  if (h.flags & rsc::kNoReply) {
    rsc::ReplyHeader r;
    if (reply.size() < sizeof(r)) return;
    memcpy(&r, reply.begin(), sizeof(r));
    writeFailures_.failed(h.args[0], r.error != 0 ? r.error : EIO);
  } else if (h.call == static_cast<uint32_t>(rsc::CallId::Close)) {
    writeFailures_.closed(h.args[0]);
  } else if (h.call == static_cast<uint32_t>(rsc::CallId::Dup3)) {
    writeFailures_.closed(h.args[1]);
  }
}

kj::Promise<void> CallRunner::cancel(uint32_t thread, uint64_t seq, kj::Timer& timer) {
  const Key key{thread, seq};
  if (running_.find(key) == running_.end()) {
    // Not begun (it may still be on its way behind the job's writes), or done already.
    if (answered_.cancelBeforeRun(thread, seq, interruptedReply(seq)) && logging()) {
      log(kj::str("a cancel of call seq ", seq, " (thread ", thread, ") came before it: it will be answered EINTR"));
    }
    return kj::READY_NOW;
  }
  if (!pool_->cancel(key)) return kj::READY_NOW;
  // The signal may have come just before the worker's call began to wait: again,
  // until the call ends.
  constexpr uint64_t kAgainMs = 5;
  return timer.afterDelay(kAgainMs * kj::MILLISECONDS).then([this, thread, seq, &timer]() {
    return cancel(thread, seq, timer);
  });
}

int64_t CallRunner::runTaken(kj::ArrayPtr<const kj::byte> request) {
  if (stopped_ || request.size() < sizeof(rsc::RequestHeader)) return -1;
  rsc::RequestHeader h;
  memcpy(&h, request.begin(), sizeof(h));
  // Its thread sent it again from a next host (the reply cut off by a checkpoint) and
  // it ran here as a call before its take came: the bytes are taken already.
  kj::ArrayPtr<const kj::byte> kept;
  if (running_.count(Key{h.thread, h.seq}) > 0 || answered_.ran(h, kept)) return 0;
  auto reply = runLogged(dispatcher_, request);
  rsc::ReplyHeader r;
  if (reply.size() < sizeof(r)) return -1;
  memcpy(&r, reply.begin(), sizeof(r));
  answered_.takenLate(h, kj::mv(reply));
  return r.result;
}

kj::Promise<void> CallRunner::inputTaken(kj::ArrayPtr<const kj::byte> request) {
  if (request.size() < sizeof(rsc::RequestHeader)) return kj::READY_NOW;
  rsc::RequestHeader h;
  memcpy(&h, request.begin(), sizeof(h));
  const rsc::Row* row = rsc::rowById(h.call);
  if (row == nullptr || !rsc::rearmsReadiness(*row)) return kj::READY_NOW;
  return inputTaken_(static_cast<int>(h.args[row->fdArg]));
}

kj::Promise<void> CallRunner::stopForHomecoming(kj::Timer& timer, uint64_t limitMs) {
  stopped_ = true;
  if (pool_->cancelAll() == 0 || limitMs == 0) return kj::READY_NOW;
  constexpr uint64_t kAgainMs = 5;
  return timer.afterDelay(kAgainMs * kj::MILLISECONDS).then([this, &timer, limitMs]() {
    return stopForHomecoming(timer, limitMs > kAgainMs ? limitMs - kAgainMs : 0);
  });
}

kj::Array<kj::byte> CallRunner::carriedReplies() const {
  using forward::CarriedEntry;
  using forward::CarriedHeader;
  auto& lastDone = answered_.lastByThread();
  size_t size = sizeof(CarriedHeader);
  for (auto& e : lastDone) size += sizeof(CarriedEntry) + forward::carriedPadded(e.second.reply.size());
  auto out = kj::heapArray<kj::byte>(size);
  memset(out.begin(), 0, size);
  CarriedHeader h{forward::kCarriedMagic, static_cast<uint32_t>(lastDone.size()), 0};
  memcpy(out.begin(), &h, sizeof(h));
  kj::byte* p = out.begin() + sizeof(h);
  for (auto& e : lastDone) {
    CarriedEntry entry{e.first, 0, e.second.seq, e.second.reply.size()};
    memcpy(p, &entry, sizeof(entry));
    p += sizeof(entry);
    memcpy(p, e.second.reply.begin(), e.second.reply.size());
    p += forward::carriedPadded(e.second.reply.size());
  }
  return out;
}

void CallRunner::takeCarried(kj::ArrayPtr<const kj::byte> table) {
  using forward::CarriedEntry;
  using forward::CarriedHeader;
  CarriedHeader h;
  if (table.size() < sizeof(h)) return;
  memcpy(&h, table.begin(), sizeof(h));
  if (h.magic != forward::kCarriedMagic) return;
  size_t at = sizeof(h);
  for (uint32_t i = 0; i < h.count && at + sizeof(CarriedEntry) <= table.size(); ++i) {
    CarriedEntry e;
    memcpy(&e, table.begin() + at, sizeof(e));
    at += sizeof(e);
    if (e.length > table.size() - at) return;
    answered_.carried(e.thread, e.seq, kj::heapArray<kj::byte>(table.slice(at, at + e.length)));
    at += forward::carriedPadded(e.length);
  }
}

}  // namespace mig::deputy
