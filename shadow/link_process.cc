// See link_process.h.
#include "shadow/link_process.h"

#include "shadow/daemon.h"
#include "shadow/error.h"

#include <kj/debug.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sys/socket.h>
#include <unistd.h>

namespace mig::shadow {

kj::Promise<kj::Maybe<kj::String>> LineChannel::readLine() {
  for (size_t i = 0; i < buffered_.size(); ++i) {
    if (buffered_[i] != '\n') continue;
    auto line = kj::heapString(buffered_.begin(), i);
    kj::Vector<char> rest;
    rest.addAll(buffered_.begin() + i + 1, buffered_.end());
    buffered_ = kj::mv(rest);
    return kj::Maybe<kj::String>(kj::mv(line));
  }
  return stream_->tryRead(chunk_, 1, sizeof(chunk_))
      .then(
          [this](size_t n) -> kj::Promise<kj::Maybe<kj::String>> {
            if (n == 0) return kj::Maybe<kj::String>(nullptr);
            buffered_.addAll(chunk_, chunk_ + n);
            return readLine();
          },
          [](kj::Exception&&) -> kj::Promise<kj::Maybe<kj::String>> { return kj::Maybe<kj::String>(nullptr); });
}

void LineChannel::writeLine(kj::StringPtr line) {
  auto bytes = kj::str(line, "\n");
  writing_ = writing_
                 // The stream, not `this`: finish() may hand the stream on meanwhile.
                 .then([stream = stream_.get(), bytes = kj::mv(bytes)]() mutable {
                   auto w = stream->write(bytes.begin(), bytes.size());
                   return w.attach(kj::mv(bytes));
                 })
                 .eagerlyEvaluate([](kj::Exception&&) {});  // the other end is gone: it decides alone
}

kj::String linkSocketPath(kj::StringPtr relayPath, uint64_t jobId) {
  kj::String dir = kj::str(".");
  KJ_IF_MAYBE(slash, relayPath.findLast('/')) { dir = kj::str(relayPath.slice(0, *slash)); }
  return kj::str(dir, "/link-", jobId, ".sock");
}

namespace {

// One side of controlOverRpc: the inner end of the pipe whose outer end is the
// LineChannel's, shared by the GuestControl server (writes what arrives into it) and the
// pump (sends what the LineChannel wrote).
struct RpcPipe : kj::Refcounted {
  kj::Own<kj::AsyncIoStream> inner;
  kj::Promise<void> writes = kj::READY_NOW;
  bool closed = false;
  // The other side is gone: the LineChannel reads its end.
  void close() {
    if (closed) return;
    closed = true;
    writes = kj::READY_NOW;
    inner->shutdownWrite();
  }
};

class ControlServer final : public rpc::GuestControl::Server {
 public:
  explicit ControlServer(kj::Own<RpcPipe> pipe) : pipe_(kj::mv(pipe)) {}
  // Dropped by the connection (it ended): so is the stream.
  ~ControlServer() noexcept(false) { pipe_->close(); }

  kj::Promise<void> write(WriteContext context) override {
    if (pipe_->closed) return kj::READY_NOW;
    auto bytes = kj::heapArray<kj::byte>(context.getParams().getBytes());
    // In the order the calls came (a pipe takes one write at a time).
    pipe_->writes = kj::mv(pipe_->writes)
                        .then([p = pipe_.get(), bytes = kj::mv(bytes)]() mutable {
                          auto w = p->inner->write(bytes.begin(), bytes.size());
                          return w.attach(kj::mv(bytes));
                        })
                        .eagerlyEvaluate([](kj::Exception&&) {});
    return kj::READY_NOW;
  }

 private:
  kj::Own<RpcPipe> pipe_;
};

struct Pump {
  Pump(kj::Own<RpcPipe> p, rpc::GuestControl::Client t) : pipe(kj::mv(p)), theirs(kj::mv(t)) {}
  kj::Own<RpcPipe> pipe;
  rpc::GuestControl::Client theirs;
  kj::byte buf[1024];

  kj::Promise<void> run() {
    return pipe->inner->tryRead(buf, 1, sizeof(buf)).then([this](size_t n) -> kj::Promise<void> {
      if (n == 0) return kj::READY_NOW;
      auto req = theirs.writeRequest();
      req.setBytes(kj::arrayPtr(buf, n));
      return req.send().ignoreResult().then([this]() { return run(); });
    });
  }
};

kj::Own<kj::AsyncIoStream> controlPair(Daemon& d, int& theirs) {
  int sv[2];
  require(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0,
          kj::str("cannot make a job's link control socket: ", strerror(errno)));
  theirs = sv[1];
  return d.io().lowLevelProvider->wrapSocketFd(sv[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
}

}  // namespace

ControlOverRpc controlOverRpc(kj::TaskSet& tasks, rpc::GuestControl::Client theirs) {
  auto pipe = kj::newTwoWayPipe();
  auto shared = kj::refcounted<RpcPipe>();
  shared->inner = kj::mv(pipe.ends[1]);
  auto pump = kj::heap<Pump>(kj::addRef(*shared), kj::mv(theirs));
  RpcPipe* p = shared.get();
  auto& running = *pump;
  tasks.add(running.run().then([p]() { p->close(); }, [p](kj::Exception&&) { p->close(); }).attach(kj::mv(pump)));
  return ControlOverRpc{kj::mv(pipe.ends[0]), kj::heap<ControlServer>(kj::mv(shared))};
}

LinkProcess::LinkProcess(Daemon& d, uint64_t jobId, kj::StringPtr home, const ChildSpec& restart, int gateFd,
                         kj::StringPtr restoreLog)
    : d_(d), jobId_(jobId), control_(controlPair(d, linkFdForCtor_)) {
  auto pidPaf = kj::newPromiseAndFulfiller<pid_t>();
  pidFulfiller_ = kj::mv(pidPaf.fulfiller);
  pid_ = pidPaf.promise.fork();
  auto exitPaf = kj::newPromiseAndFulfiller<int>();
  exitFulfiller_ = kj::mv(exitPaf.fulfiller);
  exited_ = exitPaf.promise.fork();

  const auto& cfg = d.config();
  ChildSpec spec;
  spec.argv.add(kj::str(cfg.migLink));
  spec.argv.add(kj::str("--job-id"));
  spec.argv.add(kj::str(jobId));
  spec.argv.add(kj::str("--home"));
  spec.argv.add(kj::str(home));
  spec.argv.add(kj::str("--socket"));
  spec.argv.add(linkSocketPath(cfg.relayPath, jobId));
  spec.argv.add(kj::str("--restore-log"));
  spec.argv.add(kj::str(restoreLog));
  spec.argv.add(kj::str("--advertise"));
  spec.argv.add(kj::str(cfg.advertise));
  // What it tells a restarted shadowd to learn the job back (Local.relearnGuest).
  spec.argv.add(kj::str("--shadowd-socket"));
  spec.argv.add(kj::str(cfg.socketPath));
  KJ_IF_MAYBE(j, d.hostedJobs().find(jobId)) {
    spec.argv.add(kj::str("--vpid"));
    spec.argv.add(kj::str((*j)->vpid));
    spec.argv.add(kj::str("--command"));
    spec.argv.add(kj::str((*j)->command));
    spec.argv.add(kj::str("--started-at"));
    spec.argv.add(kj::str((*j)->startedAt));
    spec.argv.add(kj::str("--network"));
    spec.argv.add(kj::str(static_cast<uint16_t>((*j)->network)));
  }
  if (cfg.keyPath.size() > 0) {
    spec.argv.add(kj::str("--cluster-key"));
    spec.argv.add(kj::str(cfg.keyPath));
  }
  if (cfg.linkMode == LinkMode::PLAINTEXT) spec.argv.add(kj::str("--insecure-plaintext-links"));
  if (!cfg.directLink) spec.argv.add(kj::str("--no-direct-link"));
  spec.argv.add(kj::str("--"));
  for (auto& a : restart.argv) spec.argv.add(kj::str(a));
  for (auto& e : restart.env) spec.env.add(kj::str(e));
  spec.stderrFd = 2;  // its lines go to shadowd's log
  spec.fd3 = gateFd;
  spec.fd4 = linkFdForCtor_;
  {
    KJ_ON_SCOPE_FAILURE(close(linkFdForCtor_));
    linkPid_ = spawnChild(spec);
  }
  close(linkFdForCtor_);
  linkExit_ = childExit(d.eventPort(), linkPid_)
                  .then([&d, jobId](int status) {
                    if (status != 0) d.log(kj::str("job ", jobId, ": its link process ended with ", describeStatus(status)));
                  })
                  .eagerlyEvaluate(nullptr);
  reading_ = readLoop().eagerlyEvaluate([this](kj::Exception&& e) {
    d_.log(kj::str("job ", jobId_, ": its link process's control: ", oneLine(e.getDescription())));
  });
}

LinkProcess::LinkProcess(Daemon& d, uint64_t jobId, pid_t linkPid, pid_t realPid, kj::Own<kj::AsyncIoStream> control)
    : d_(d), jobId_(jobId), linkPid_(linkPid), control_(kj::mv(control)) {
  auto pidPaf = kj::newPromiseAndFulfiller<pid_t>();
  pidFulfiller_ = kj::mv(pidPaf.fulfiller);
  pid_ = pidPaf.promise.fork();
  pidFulfiller_->fulfill(kj::cp(realPid));
  auto exitPaf = kj::newPromiseAndFulfiller<int>();
  exitFulfiller_ = kj::mv(exitPaf.fulfiller);
  exited_ = exitPaf.promise.fork();
  linkExit_ = kj::READY_NOW;  // not our child: its end is its control's end
  reading_ = readLoop().eagerlyEvaluate([this](kj::Exception&& e) {
    d_.log(kj::str("job ", jobId_, ": its link process's control: ", oneLine(e.getDescription())));
  });
}

LinkProcess::~LinkProcess() noexcept(false) {
  // Forgotten before its end came (a hop given up: its owner kills the job).
  if (pidFulfiller_->isWaiting()) pidFulfiller_->reject(KJ_EXCEPTION(DISCONNECTED, "the hop was given up"));
  if (exitFulfiller_->isWaiting()) exitFulfiller_->fulfill(SIGKILL);
  // Still running (a hop given up): it ends with the job, which its owner kills.
  d_.tasks().add(kj::mv(linkExit_));
  reading_ = nullptr;
  d_.tasks().add(control_.finish());  // "tell" or "left" must reach it
}

kj::Promise<void> LinkProcess::readLoop() {
  return control_.readLine().then([this](kj::Maybe<kj::String> line) -> kj::Promise<void> {
    KJ_IF_MAYBE(l, line) {
      handle(*l);
      return readLoop();
    }
    // The link process is gone before the job's end reached us: the job's calls home
    // went with it, so the job cannot go on; it is killed, and its end is ours to tell.
    if (pidFulfiller_->isWaiting()) pidFulfiller_->reject(KJ_EXCEPTION(FAILED, "the job's link process ended"));
    if (exitFulfiller_->isWaiting()) {
      lost_ = true;
      KJ_IF_MAYBE(j, d_.hostedJobs().find(jobId_)) {
        if ((*j)->realPid > 0) kill((*j)->realPid, SIGKILL);
      }
      d_.log(kj::str("job ", jobId_, ": its link process ended before the job: the job is killed"));
      unlink(linkSocketPath(d_.config().relayPath, jobId_).cStr());  // it could not remove it itself
      exitFulfiller_->fulfill(SIGKILL);
    }
    for (auto& w : problemWaiters_) w->fulfill(kj::str("its link process ended"));
    problemWaiters_.clear();
    return kj::READY_NOW;
  });
}

void LinkProcess::addCounts(char* p) {
  auto& m = d_.metrics();
  m.forwardedCalls += strtoull(p, &p, 10);
  m.forwardedBytesOut += strtoull(p, &p, 10);
  m.forwardedBytesIn += strtoull(p, &p, 10);
}

void LinkProcess::handle(kj::StringPtr line) {
  if (line.startsWith("pid ")) {
    pid_t pid = static_cast<pid_t>(strtol(line.cStr() + 4, nullptr, 10));
    if (pid > 0) {
      pidFulfiller_->fulfill(kj::mv(pid));
    } else {
      pidFulfiller_->reject(KJ_EXCEPTION(FAILED, "the job's link process could not start its restart"));
    }
  } else if (line == "running") {
    KJ_IF_MAYBE(j, d_.hostedJobs().find(jobId_)) {
      HostedJob& job = **j;
      if (!job.running) {
        job.running = true;
        if (job.onRunning) job.onRunning->fulfill();
      }
    }
  } else if (line.startsWith("problems ")) {
    if (!problemWaiters_.empty()) {
      problemWaiters_[0]->fulfill(kj::str(line.slice(9)));
      kj::Vector<kj::Own<kj::PromiseFulfiller<kj::String>>> rest;
      for (size_t i = 1; i < problemWaiters_.size(); ++i) rest.add(kj::mv(problemWaiters_[i]));
      problemWaiters_ = kj::mv(rest);
    }
  } else if (line.startsWith("counts ")) {
    addCounts(const_cast<char*>(line.cStr()) + 7);
  } else if (line.startsWith("ended ")) {
    char* p = const_cast<char*>(line.cStr()) + 6;
    int status = static_cast<int>(strtol(p, &p, 10));
    addCounts(p);
    if (exitFulfiller_->isWaiting()) exitFulfiller_->fulfill(kj::mv(status));
  } else {
    d_.log(kj::str("job ", jobId_, ": its link process said something unknown: ", line));
  }
}

kj::Promise<kj::String> LinkProcess::setupProblems() {
  auto paf = kj::newPromiseAndFulfiller<kj::String>();
  problemWaiters_.add(kj::mv(paf.fulfiller));
  control_.writeLine("check");
  return kj::mv(paf.promise);
}

}  // namespace mig::shadow
