// mig-link: the link process of one job that migrated in (link_process.h: what it is
// for, and its control lines with shadowd). shadowd starts it in place of the job's
// restart; it runs the restart as its child (so it is the job's parent on this host and
// gets its wait status, whatever becomes of shadowd), serves the job's call relay on
// the job's own Unix socket (call_relay.cc, job_calls.h, the same code shadowd ran),
// holds the job's direct link to its deputy (direct_link.h), and, once the job's
// process has ended and its last writes have run at home, tells home the job's end.
// It holds the cluster key as shadowd does (it is shadowd's helper, never the job's).
// When shadowd goes away while the job runs, it carries on alone and announces the job
// to the shadowd that listens on the host's local socket again (link_process.h).
//
// usage (shadowd's, not a user's): mig-link --job-id N --home ADDR --socket PATH
//   --restore-log FILE --advertise ADDR [--shadowd-socket PATH --vpid PID --command TEXT
//   --started-at SECONDS --network N] [--cluster-key FILE] [--insecure-plaintext-links]
//   [--no-direct-link] -- RESTART-ARGV...
// fd 3: the restart's gate (passed on as its fd 3); fd 4: the control socket; the
// job's token in MIG_JOB_TOKEN (passed on too).
#include "shadow/child_process.h"
#include "shadow/daemon.h"
#include "shadow/error.h"
#include "shadow/hex.h"
#include "shadow/link_process.h"
#include "shadow/services.h"

#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace mig::shadow {
namespace {

constexpr int kGateFd = 3;
constexpr int kControlFd = 4;
// Telling home the job's end: home's shadowd, else the deputy over the direct link;
// not for ever (the parent at home then sees its deputy end as the link breaks).
constexpr uint64_t kTellHomeMs = 30 * 1000;
// Announcing the job to a restarted shadowd: tries from 100 ms apart, doubling up to 5 s
// apart, for as long as the job runs (a connect to a Unix socket costs nothing); one
// line when it starts, one when shadowd took the job, one for each new reason it did not.
constexpr uint64_t kRelearnFirstMs = 100;
constexpr uint64_t kRelearnMaxMs = 5000;

struct Args {
  uint64_t jobId = 0;
  kj::String home, socket, restoreLog, advertise, keyPath;
  kj::String shadowdSocket, command;  // for a restarted shadowd (Local.relearnGuest)
  pid_t vpid = 0;
  double startedAt = 0;
  rpc::NetworkPolicy network = rpc::NetworkPolicy::HOME;
  LinkMode linkMode = LinkMode::ENCRYPTED;
  bool directLink = true;
  kj::Vector<kj::String> restart;
};

[[noreturn]] void usage(kj::StringPtr why) {
  fprintf(stderr, "mig-link: %s (it is started by shadowd, not by hand)\n", why.cStr());
  exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  int i = 1;
  auto value = [&](const char* name) -> kj::String {
    if (i + 1 >= argc) usage(kj::str(name, " needs a value"));
    return kj::str(argv[++i]);
  };
  for (; i < argc; ++i) {
    kj::StringPtr o = argv[i];
    if (o == "--") {
      for (++i; i < argc; ++i) a.restart.add(kj::str(argv[i]));
      break;
    }
    if (o == "--job-id") {
      a.jobId = strtoull(value("--job-id").cStr(), nullptr, 10);
    } else if (o == "--home") {
      a.home = value("--home");
    } else if (o == "--socket") {
      a.socket = value("--socket");
    } else if (o == "--restore-log") {
      a.restoreLog = value("--restore-log");
    } else if (o == "--advertise") {
      a.advertise = value("--advertise");
    } else if (o == "--cluster-key") {
      a.keyPath = value("--cluster-key");
    } else if (o == "--insecure-plaintext-links") {
      a.linkMode = LinkMode::PLAINTEXT;
    } else if (o == "--no-direct-link") {
      a.directLink = false;
    } else if (o == "--shadowd-socket") {
      a.shadowdSocket = value("--shadowd-socket");
    } else if (o == "--vpid") {
      a.vpid = static_cast<pid_t>(strtol(value("--vpid").cStr(), nullptr, 10));
    } else if (o == "--command") {
      a.command = value("--command");
    } else if (o == "--network") {
      a.network = static_cast<rpc::NetworkPolicy>(strtoul(value("--network").cStr(), nullptr, 10));
    } else if (o == "--started-at") {
      a.startedAt = strtod(value("--started-at").cStr(), nullptr);
    } else {
      usage(kj::str("unknown option ", o));
    }
  }
  if (a.jobId == 0 || a.home.size() == 0 || a.socket.size() == 0 || a.restoreLog.size() == 0 || a.restart.empty()) {
    usage("--job-id, --home, --socket, --restore-log and the restart's command line are needed");
  }
  return a;
}

// The job's life here, from its restart to its end told home.
class Link {
 public:
  Link(Daemon& d, Args& a, HostedJob& job, kj::Own<kj::AsyncIoStream> control)
      : d_(d), a_(a), job_(job), control_(kj::heap<LineChannel>(kj::mv(control))) {}

  kj::Promise<void> run(kj::Promise<void> running) {
    ChildSpec spec;
    for (auto& s : a_.restart) spec.argv.add(kj::str(s));
    int log = open(a_.restoreLog.cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    spec.stderrFd = log;
    spec.fd3 = kGateFd;
    spec.ownSession = true;
    pid_t pid = 0;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { pid = spawnChild(spec); })) {
      d_.log(kj::str("job ", a_.jobId, ": cannot start its restart: ", oneLine(e->getDescription())));
    }
    if (log >= 0) close(log);
    close(kGateFd);
    control_->writeLine(kj::str("pid ", pid));
    if (pid <= 0) {
      control_->writeLine("ended 32512 0 0 0");  // as an exec failure: 127
      return control_->finish();
    }
    job_.realPid = pid;
    d_.log(kj::str("job ", a_.jobId, ": its link process; its calls come to ", a_.socket));
    d_.tasks().add(running.then([this]() { control_->writeLine("running"); }));
    d_.tasks().add(readControl());
    d_.tasks().add(reportCounts());
    watchStops(pid);
    return childExit(d_.eventPort(), pid).then([this](int status) {
      status_ = status;
      ended_ = true;
      control_->writeLine(kj::str("ended ", status_, " ", takeCounts()));
      // No shadowd to answer (gone, not back yet): the end is ours to tell.
      if (shadowdGone_) decided(job_.running);
      return answer();
    }).then([this](bool tell) -> kj::Promise<void> {
      // A job that left: its calls still in flight (a read blocked at home) are dropped
      // with this process, which cancels them at home; its next host sends them again.
      if (!tell) return kj::READY_NOW;
      // Its last writes go home before its end does: the parent reads them first.
      return job_.calls->settled().then([this]() { return tellHome(); });
    });
  }

 private:
  // The job's stops and continues here (a `kill -STOP` of its PID on this host), which
  // kj's reaper never reports and home would not hear of: a thread waits for them
  // (waitid without WEXITED leaves the job's end to the reaper; once it is reaped the
  // thread sleeps until this process ends) and hands each to the event loop, which
  // tells home, whose shadowd stops or continues the deputy alike (rpc::JobStops).
  void watchStops(pid_t pid) {
    // Kept for the process's life: the thread may outlive this object.
    auto* loop = new kj::Own<const kj::Executor>(kj::getCurrentThreadExecutor().addRef());
    std::thread([this, pid, loop]() {
      for (;;) {
        siginfo_t info{};
        if (waitid(P_PID, pid, &info, WSTOPPED | WCONTINUED) != 0) {
          if (errno == EINTR) continue;
          return;
        }
        if (info.si_code != CLD_STOPPED && info.si_code != CLD_CONTINUED) continue;
        const int sig = info.si_code == CLD_CONTINUED ? SIGCONT : info.si_status;
        // The loop is gone once this process ends: nothing left to tell.
        kj::runCatchingExceptions([&]() { (*loop)->executeSync([this, sig]() { tellStop(sig); }); });
      }
    }).detach();
  }

  void tellStop(int sig) {
    d_.tasks().add(job_.calls->tellStop(sig).catch_([this, sig](kj::Exception&& e) {
      d_.log(kj::str("job ", a_.jobId, ": its ", sig == SIGCONT ? kj::str("continue") : kj::str("stop (signal ", sig, ")"),
                     " here could not be told home: ", oneLine(e.getDescription())));
    }));
  }

  // What the job's calls added to the counters since the last report: "CALLS OUT IN".
  kj::String takeCounts() {
    auto& m = d_.metrics();
    auto line = kj::str(m.forwardedCalls - reported_[0], " ", m.forwardedBytesOut - reported_[1], " ",
                        m.forwardedBytesIn - reported_[2]);
    reported_[0] = m.forwardedCalls;
    reported_[1] = m.forwardedBytesOut;
    reported_[2] = m.forwardedBytesIn;
    return line;
  }

  // shadowd's metrics count the job's calls as they go, not only at its end.
  kj::Promise<void> reportCounts() {
    return d_.io().provider->getTimer().afterDelay(kCountsEveryMs * kj::MILLISECONDS).then([this]() -> kj::Promise<void> {
      if (ended_ || shadowdGone_) return kj::READY_NOW;
      if (d_.metrics().forwardedCalls != reported_[0]) control_->writeLine(kj::str("counts ", takeCounts()));
      return reportCounts();
    });
  }

  // shadowd's lines: "check", and "tell"/"left" once the job ended; its end (shadowd
  // killed or restarted) leaves the decision to us.
  kj::Promise<void> readControl() {
    return control_->readLine().then([this](kj::Maybe<kj::String> line) -> kj::Promise<void> {
      KJ_IF_MAYBE(l, line) {
        if (*l == "check") {
          d_.tasks().add(job_.calls->setupProblems().then([this](kj::String p) {
            for (auto& c : p) if (c == '\n') c = ' ';
            control_->writeLine(kj::str("problems ", p));
          }));
        } else if (*l == "tell" || *l == "left") {
          decided(*l == "tell");
        }
        return readControl();
      }
      shadowdGone_ = true;
      // A job that never ran here (its hop was given up) has no end to tell; one that
      // ended has its end told by us.
      if (ended_ || !job_.running || a_.shadowdSocket.size() == 0) {
        d_.log(kj::str("job ", a_.jobId, ": shadowd went away; its link process carries its calls home on its own"));
        decided(job_.running);
        return kj::READY_NOW;
      }
      d_.log(kj::str("job ", a_.jobId, ": shadowd went away; its link process carries its calls home on its own and "
                     "announces the job to shadowd when it listens again on ", a_.shadowdSocket));
      lastRefusal_ = nullptr;
      d_.tasks().add(relearn(kRelearnFirstMs));
      return kj::READY_NOW;
    });
  }

  // Until a shadowd on this host takes the job back (or the job ends).
  kj::Promise<void> relearn(uint64_t delayMs) {
    return d_.io().provider->getTimer().afterDelay(delayMs * kj::MILLISECONDS).then([this, delayMs]() -> kj::Promise<void> {
      if (ended_ || !shadowdGone_) return kj::READY_NOW;
      return announce().catch_([this, delayMs](kj::Exception&& e) -> kj::Promise<void> {
        auto why = oneLine(e.getDescription());
        bool same = false;
        KJ_IF_MAYBE(last, lastRefusal_) { same = *last == why; }
        if (!same) {
          d_.log(kj::str("job ", a_.jobId, ": not announced to shadowd yet (", why, "); trying again"));
          lastRefusal_ = kj::mv(why);
        }
        return relearn(kj::min(delayMs * 2, kRelearnMaxMs));
      });
    });
  }

  // Local.relearnGuest on shadowd's socket: the job's record, and the control lines
  // from then on over that connection.
  kj::Promise<void> announce() {
    return d_.io().provider->getNetwork().parseAddress(kj::str("unix:", a_.shadowdSocket))
        .then([](kj::Own<kj::NetworkAddress> address) { return address->connect().attach(kj::mv(address)); })
        .then([this](kj::Own<kj::AsyncIoStream> stream) {
          auto conn = kj::heap<ShadowdConnection>(kj::mv(stream));
          auto local = conn->client.bootstrap().castAs<rpc::Local>();
          auto theirs = kj::newPromiseAndFulfiller<rpc::GuestControl::Client>();
          auto control = controlOverRpc(d_.tasks(), rpc::GuestControl::Client(kj::mv(theirs.promise)));
          auto req = local.relearnGuestRequest();
          auto g = req.initGuest();
          g.setJobId(a_.jobId);
          g.setToken(job_.token);
          g.setHome(a_.home);
          g.setVpid(a_.vpid);
          g.setRealPid(job_.realPid);
          g.setLinkPid(getpid());
          g.setCommand(a_.command);
          g.setStartedAt(a_.startedAt);
          g.setSocket(a_.socket);
          g.setNetwork(a_.network);
          // Everything so far: the new shadowd's metrics start from nothing.
          auto& m = d_.metrics();
          g.setForwardedCalls(m.forwardedCalls);
          g.setForwardedBytesOut(m.forwardedBytesOut);
          g.setForwardedBytesIn(m.forwardedBytesIn);
          uint64_t counted[3] = {m.forwardedCalls, m.forwardedBytesOut, m.forwardedBytesIn};
          req.setControl(kj::mv(control.mine));
          return req.send().then([this, conn = kj::mv(conn), stream = kj::mv(control.stream),
                                  fulfiller = kj::mv(theirs.fulfiller), counted0 = counted[0], counted1 = counted[1],
                                  counted2 = counted[2]](capnp::Response<rpc::Local::RelearnGuestResults>&& r) mutable {
            fulfiller->fulfill(r.getControl());
            shadowd_ = kj::mv(conn);
            control_ = kj::heap<LineChannel>(kj::mv(stream));
            reported_[0] = counted0;
            reported_[1] = counted1;
            reported_[2] = counted2;
            shadowdGone_ = false;
            d_.log(kj::str("job ", a_.jobId, ": announced to the restarted shadowd, which runs it as its guest again"));
            d_.tasks().add(readControl());
            if (ended_) {
              // It ended while we asked: shadowd learns it, we tell home (decided already).
              control_->writeLine(kj::str("ended ", status_, " ", takeCounts()));
            } else {
              d_.tasks().add(reportCounts());
            }
          });
        });
  }

  void decided(bool tell) {
    if (answered_) return;
    answered_ = true;
    tell_ = tell;
    KJ_IF_MAYBE(f, answerFulfiller_) { (*f)->fulfill(kj::cp(tell)); }
  }

  kj::Promise<bool> answer() {
    if (answered_) return tell_;
    auto paf = kj::newPromiseAndFulfiller<bool>();
    answerFulfiller_ = kj::mv(paf.fulfiller);
    return kj::mv(paf.promise);
  }

  kj::Promise<void> tellHome() {
    const int status = status_;
    auto told = d_.peer(a_.home).then([this, status](rpc::Node::Client home) {
      auto req = home.jobEndedRequest();
      req.setJobId(a_.jobId);
      req.setToken(job_.token);
      req.setStatus(status);
      return req.send().ignoreResult();
    }).catch_([this, status](kj::Exception&& e) {
      // Home's shadowd restarted or gone: the deputy hears it over the direct link.
      d_.log(kj::str("job ", a_.jobId, ": its home did not take its end (", oneLine(e.getDescription()), ")"));
      return job_.calls->tellEndedDirectly(status);
    });
    if (shadowdGone_) d_.log(kj::str("job ", a_.jobId, " ended here: ", describeStatus(status), "; telling its home"));
    return d_.io().provider->getTimer().timeoutAfter(kTellHomeMs * kj::MILLISECONDS, kj::mv(told))
        .catch_([this](kj::Exception&& e) {
          d_.log(kj::str("job ", a_.jobId, ": its end could not be told home: ", oneLine(e.getDescription())));
        });
  }

  // A connection to a restarted shadowd that took the job back (its control lines).
  struct ShadowdConnection {
    explicit ShadowdConnection(kj::Own<kj::AsyncIoStream> s) : stream(kj::mv(s)), client(*stream) {}
    kj::Own<kj::AsyncIoStream> stream;
    capnp::TwoPartyClient client;
  };

  Daemon& d_;
  Args& a_;
  HostedJob& job_;
  kj::Own<LineChannel> control_;
  kj::Maybe<kj::Own<ShadowdConnection>> shadowd_;
  kj::Maybe<kj::String> lastRefusal_;  // logged once until it changes
  int status_ = 0;
  bool ended_ = false;
  uint64_t reported_[3] = {0, 0, 0};  // the counters as last reported to shadowd
  static constexpr uint64_t kCountsEveryMs = 1000;
  bool shadowdGone_ = false;
  bool answered_ = false;
  bool tell_ = false;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<bool>>> answerFulfiller_;
};

int run(int argc, char** argv) {
  Args a = parse(argc, argv);
  // Not the restart's: it gets the gate (3) alone.
  if (fcntl(kControlFd, F_SETFD, FD_CLOEXEC) != 0) usage("no control socket at fd 4");
  signal(SIGPIPE, SIG_IGN);
  kj::UnixEventPort::captureChildExit();
  auto io = kj::setupAsyncIo();
  DaemonConfig config;
  config.advertise = kj::str(a.advertise);
  config.keyPath = kj::str(a.keyPath);
  config.linkMode = a.linkMode;
  config.directLink = a.directLink;
  config.relayPath = kj::str(a.socket);
  config.logName = "mig-link";
  ClusterKey key = ClusterKey::none();
  if (a.keyPath.size() > 0) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { key = ClusterKey::load(a.keyPath); })) {
      fprintf(stderr, "mig-link: %s\n", e->getDescription().cStr());
      return 1;
    }
  }
  Daemon d(io, kj::mv(config), kj::mv(key));
  kj::Array<kj::byte> token;
  if (kj::runCatchingExceptions([&]() { token = tokenFromEnv(); }) != nullptr) usage("no job token");

  auto owned = kj::heap<HostedJob>();
  HostedJob& job = *owned;
  job.id = a.jobId;
  job.token = kj::mv(token);
  job.home = kj::str(a.home);
  job.calls = kj::refcounted<JobCalls>(d, job.id, job.home, job.token);
  auto paf = kj::newPromiseAndFulfiller<void>();
  job.onRunning = kj::mv(paf.fulfiller);
  d.hostedJobs().insert(job.id, kj::mv(owned));

  unlink(a.socket.cStr());
  kj::Own<kj::ConnectionReceiver> listener;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    listener = io.provider->getNetwork().parseAddress(kj::str("unix:", a.socket)).wait(io.waitScope)->listen();
  })) {
    fprintf(stderr, "mig-link: cannot listen on %s: %s\n", a.socket.cStr(), e->getDescription().cStr());
    return 1;
  }
  chmod(a.socket.cStr(), 0666);  // jobs of any user; each must show its job token
  auto relayServing = serveCallRelay(d, *listener);

  Link link(d, a, job, io.lowLevelProvider->wrapSocketFd(kControlFd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP));
  int status = 0;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    link.run(kj::mv(paf.promise)).exclusiveJoin(kj::mv(relayServing)).wait(io.waitScope);
  })) {
    d.log(kj::str("job ", a.jobId, ": stopping: ", oneLine(e->getDescription())));
    status = 1;
  }
  unlink(a.socket.cStr());
  return status;
}

}  // namespace
}  // namespace mig::shadow

int main(int argc, char** argv) {
  mig::shadow::keepCallBuffers();
  return mig::shadow::run(argc, argv);
}
