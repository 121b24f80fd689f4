// mig-deputy: what a job's home process becomes at its first migration. The shim
// execs it in place, so it is the same process: same PID, same parent (which still
// waits for it), same fds (files, pipes, the terminal), same process group. It
//   - registers with the home shadowd as the job's deputy;
//   - runs the job's forwarded system calls (rsc/wire.h) through the rsc dispatcher,
//     with the job's fds, cwd and identity;
//   - watches the job's sockets, pipes and terminal for readability, for their
//     readiness stand-ins where the job runs (shim/forward/readiness_stand_in.h);
//   - forwards the signals it receives (kill, Ctrl-C on its terminal) to the job;
//   - ends the way the job ends (exit status or signal), so its parent sees that.
// It prints nothing: its stdout and stderr are the job's.
//
// usage: MIG_JOB_TOKEN=HEX mig-deputy --job-id ID --socket SHADOWD_SOCKET [--drop-signals MASK]
#include "rsc/call_policy.h"
#include "rsc/dispatch.h"
#include "rsc/forward_table.h"
#include "rsc/wire.h"
#include "shadow/daemon.h"
#include "shadow/mig.capnp.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

// Signals the deputy passes on to the job. SIGALRM is not among them: the job's
// own timer went with it (and the deputy disarms the one it inherited). SIGCHLD is:
// the children the job forked at home are the deputy's now, and the job reaps them
// with forwarded waits when it hears of them.
constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGCHLD};

// The signal kj may use for itself: 62, next to the shim's checkpoint signal (63);
// the deputy never forwards either.
constexpr int kReservedSignal = 62;

// The deputy's own fds (event loop, shadowd connection) must not take numbers the job
// may use: it opens them while every low number is taken by a placeholder.
constexpr int kReservedLow = 1024;

[[noreturn]] void endLike(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);  // the job dumped (or not) where it ran
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
    raise(sig);
    _exit(128 + sig);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

// Runs forwarded calls on threads of their own: a call may block (a read on the
// terminal or a pipe) while the job's other threads go on making calls. A worker is
// started whenever none is idle; idle ones wait for the next call.
class CallPool {
 public:
  using Done = kj::Own<kj::CrossThreadPromiseFulfiller<kj::Array<kj::byte>>>;

  explicit CallPool(rsc::Dispatcher& dispatcher) : dispatcher_(dispatcher) {}
  ~CallPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.detach();  // a worker may be blocked in a call: the process ends anyway
  }

  kj::Promise<kj::Array<kj::byte>> run(kj::Array<kj::byte> request) {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<kj::Array<kj::byte>>();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back({kj::mv(request), kj::mv(paf.fulfiller)});
      if (idle_ == 0) threads_.emplace_back([this]() { work(); });
    }
    wake_.notify_one();
    return kj::mv(paf.promise);
  }

 private:
  struct Job {
    kj::Array<kj::byte> request;
    Done done;
  };

  void work() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      ++idle_;
      wake_.wait(lock, [this]() { return stopping_ || !queue_.empty(); });
      --idle_;
      if (stopping_) return;
      Job job = kj::mv(queue_.front());
      queue_.pop_front();
      lock.unlock();
      job.done->fulfill(dispatcher_.call(job.request));
      lock.lock();
    }
  }

  rsc::Dispatcher& dispatcher_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  std::vector<std::thread> threads_;
  int idle_ = 0;
  bool stopping_ = false;
};

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

// Where the deputy's copies of watched fds go: above every number the job's fd table
// can use (forward::kMaxFds), so a call of the job never lands on one.
constexpr int kWatchFdFloor = 4096;

// The identity of an open file, to tell which watches a call on some fd concerns
// (the job may have it under several numbers).
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const FileId&) const = default;
};

bool fileOf(int fd, FileId& id) {
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  id = {st.st_dev, st.st_ino};
  return true;
}

// One home fd watched for a readiness stand-in on the job's host (readiness_stand_in.h
// has the protocol). It watches its own copy of the fd, so the job's closing or
// reusing the number cannot make it watch something else.
class Watch final : public rpc::ReadinessWatch::Server {
 public:
  Watch(kj::UnixEventPort& port, kj::TaskSet& tasks, kj::Vector<Watch*>& all, int fd, rpc::Readiness::Client readiness)
      : tasks_(tasks), all_(all), fd_(duplicate(fd)), observer_(port, fd_, kj::UnixEventPort::FdObserver::OBSERVE_READ),
        readiness_(kj::mv(readiness)) {
    KJ_REQUIRE(fileOf(fd_, file_));
    all_.add(this);
    arm();
  }
  ~Watch() noexcept(false) {
    for (size_t i = 0; i < all_.size(); ++i) {
      if (all_[i] == this) {
        all_[i] = all_.back();
        all_.removeLast();
        break;
      }
    }
  }

  const FileId& file() const { return file_; }

  // A call that takes input from the file has run: whatever was announced may be
  // gone, or more may wait.
  void inputTaken() {
    if (!told_) return;
    told_ = false;
    arm();
  }

 private:
  static kj::AutoCloseFd duplicate(int fd) {
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, kWatchFdFloor);
    KJ_REQUIRE(copy >= 0, "cannot watch the fd", fd, strerror(errno));
    return kj::AutoCloseFd(copy);
  }

  bool readableNow() {
    struct pollfd p = {fd_.get(), POLLIN, 0};
    return poll(&p, 1, 0) == 1;  // data, a connection to accept, EOF, an error or a hangup
  }

  // Resolves once the fd is readable. The observer reports edges only: the wait is
  // asked for first, then the level looked at, so no edge falls in between.
  kj::Promise<void> readable() {
    auto edge = observer_.whenBecomesReadable();
    if (readableNow()) return kj::READY_NOW;
    return edge.then([this]() { return readable(); });
  }

  void arm() {
    waiting_ = readable()
                   .then([this]() {
                     told_ = true;
                     tasks_.add(readiness_.readyRequest().send().ignoreResult());
                   })
                   .eagerlyEvaluate([](kj::Exception&&) {});
  }

  kj::TaskSet& tasks_;
  kj::Vector<Watch*>& all_;
  kj::AutoCloseFd fd_;
  kj::UnixEventPort::FdObserver observer_;
  rpc::Readiness::Client readiness_;
  FileId file_;
  bool told_ = false;
  kj::Promise<void> waiting_ = nullptr;
};

class DeputyImpl final : public rpc::Deputy::Server {
 public:
  DeputyImpl(kj::UnixEventPort& port, kj::TaskSet& tasks) : port_(port), tasks_(tasks) {}

  kj::Promise<void> watch(WatchContext context) override {
    auto p = context.getParams();
    context.getResults().setWatch(kj::heap<Watch>(port_, tasks_, watches_, p.getFd(), p.getReadiness()));
    return kj::READY_NOW;
  }

  kj::Promise<void> call(CallContext context) override {
    auto request = context.getParams().getRequest();
    const Runs runs = howToRun(request);
    if (runs == Runs::Here) {
      context.getResults().setReply(dispatcher_.call(request));
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
        auto& last = lastDone_[h.thread] = Done{h.seq, dispatcher_.call(request)};
        context.getResults().setReply(last.reply);
        inputTaken(request);
        return kj::READY_NOW;
      }
      auto finished = pool_.run(kj::heapArray<kj::byte>(request)).then([this, key](kj::Array<kj::byte> reply) {
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

  kj::Promise<void> ended(EndedContext context) override { endLike(context.getParams().getStatus()); }

 private:
  using Key = std::pair<uint32_t, uint64_t>;  // thread, seq
  struct Done {
    uint64_t seq;
    kj::Array<kj::byte> reply;
  };

  // After a call that took input from an fd, the watches of that file look again.
  void inputTaken(kj::ArrayPtr<const kj::byte> request) {
    if (watches_.empty() || request.size() < sizeof(rsc::RequestHeader)) return;
    rsc::RequestHeader h;
    memcpy(&h, request.begin(), sizeof(h));
    const rsc::Row* row = rsc::rowById(h.call);
    FileId file;
    if (row == nullptr || !rsc::rearmsReadiness(*row) || !fileOf(static_cast<int>(h.args[row->fdArg]), file)) return;
    for (Watch* w : watches_) {
      if (w->file() == file) w->inputTaken();
    }
  }

  kj::UnixEventPort& port_;
  kj::TaskSet& tasks_;
  kj::Vector<Watch*> watches_;
  rsc::Dispatcher dispatcher_;
  CallPool pool_{dispatcher_};
  std::map<Key, kj::ForkedPromise<void>> running_;
  std::map<uint32_t, Done> lastDone_;  // by thread: its last call that waited, answered
};

kj::Vector<int> fillLowFds() {
  kj::Vector<int> placeholders;
  struct rlimit lim {};
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur < static_cast<rlim_t>(kReservedLow) + 64) return placeholders;
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0) return placeholders;
  for (int fd = 0; fd < kReservedLow; ++fd) {
    if (fcntl(fd, F_GETFD) >= 0) continue;
    if (dup3(null, fd, O_CLOEXEC) == fd) placeholders.add(fd);
  }
  if (null >= kReservedLow) close(null);
  else placeholders.add(null);
  return placeholders;
}

int run(int argc, char** argv) {
  uint64_t jobId = 0;
  kj::Array<kj::byte> token;
  const char* socketPath = nullptr;
  uint64_t dropSignals = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--job-id") == 0) jobId = strtoull(argv[i + 1], nullptr, 10);
    else if (strcmp(argv[i], "--socket") == 0) socketPath = argv[i + 1];
    else if (strcmp(argv[i], "--drop-signals") == 0) dropSignals = strtoull(argv[i + 1], nullptr, 16);
  }
  if (const char* t = getenv(kTokenEnv)) token = unhex(t);
  if (jobId == 0 || token.size() != 32 || socketPath == nullptr) return 127;

  // The inherited ITIMER_REAL belongs to the job, which took it along.
  struct itimerval off {};
  setitimer(ITIMER_REAL, &off, nullptr);

  // Signals that were pending at the freeze went with the job's image.
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, nullptr);
  for (int sig = 1; sig <= 64; ++sig) {
    if (!(dropSignals & (1ull << (sig - 1)))) continue;
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&one, nullptr, &zero) == sig) {
    }
  }
  // kj wakes its event loop with SIGUSR1 unless told otherwise; SIGUSR1 is the job's.
  kj::UnixEventPort::setReservedSignal(kReservedSignal);
  for (int sig : kForwarded) kj::UnixEventPort::captureSignal(sig);

  auto placeholders = fillLowFds();
  auto io = kj::setupAsyncIo();
  auto address = io.provider->getNetwork().parseAddress(kj::str("unix:", socketPath)).wait(io.waitScope);
  auto stream = address->connect().wait(io.waitScope);
  for (int fd : placeholders) close(fd);

  struct Ignore final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  } ignoreErrors;
  kj::TaskSet tasks(ignoreErrors);

  capnp::TwoPartyClient client(*stream);
  auto local = client.bootstrap().castAs<rpc::Local>();
  {
    auto req = local.registerDeputyRequest();
    req.setJobId(jobId);
    req.setToken(token);
    req.setDeputy(kj::heap<DeputyImpl>(io.unixEventPort, tasks));
    req.send().wait(io.waitScope);
  }
  kj::Function<kj::Promise<void>(int)> forward = [&](int sig) -> kj::Promise<void> {
    return io.unixEventPort.onSignal(sig).then([&, sig](siginfo_t) {
      auto req = local.deputySignalRequest();
      req.setJobId(jobId);
      req.setToken(token);
      req.setSignal(sig);
      tasks.add(req.send().ignoreResult());
      return forward(sig);
    });
  };
  for (int sig : kForwarded) tasks.add(forward(sig));

  // Runs until the job ends (Deputy.ended exits the process). If shadowd goes away
  // the job cannot reach home any more; the deputy stays, so the parent keeps
  // waiting, until it is killed.
  client.onDisconnect().wait(io.waitScope);
  for (;;) pause();
}

}  // namespace
}  // namespace mig::shadow

int main(int argc, char** argv) { return mig::shadow::run(argc, argv); }
