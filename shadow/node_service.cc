// Node: what a logged-in peer shadowd may ask of this one: take a migrating job,
// send a job that runs here elsewhere, reach the deputy of a job whose home is here,
// deliver a signal to a job that runs here, report that a job ended, tell the time.
#include "image/stream_verifier.h"
#include "resources/proc_file.h"
#include "resources/proc_owner.h"
#include "resources/network_page_source.h"
#include "resources/sysv_names.h"
#include "shim/control_protocol.h"
#include "shadow/balance.h"
#include "shadow/child_process.h"
#include "shadow/clock_offset.h"
#include "shadow/direct_link.h"
#include "shadow/drain.h"
#include "shadow/error.h"
#include "shadow/hex.h"
#include "shadow/home_gate.h"
#include "shadow/hop_fault.h"
#include "shadow/network_policy.h"
#include "shadow/services.h"
#include "shadow/spool.h"
#include "shadow/process_end.h"
#include "shadow/tree_homecoming.h"

#include <kj/debug.h>

#include <algorithm>
#include <cstdlib>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

// Whether process `pid` leaves `sig` at its default action (neither caught nor
// ignored, from /proc/PID/status).
bool stopsByDefault(pid_t pid, int sig) {
  FILE* f = fopen(kj::str("/proc/", pid, "/status").cStr(), "re");
  if (f == nullptr) return false;
  unsigned long long ign = 0, cgt = 0;
  char line[256];
  while (fgets(line, sizeof line, f) != nullptr) {
    sscanf(line, "SigIgn: %llx", &ign);
    sscanf(line, "SigCgt: %llx", &cgt);
  }
  fclose(f);
  unsigned long long bit = 1ull << (sig - 1);
  return !(ign & bit) && !(cgt & bit);
}

// Delivers a signal from home to process `pid` here. The kernel lets a process queue a
// siginfo to another only with a negative si_code other than SI_TKILL (sigqueue,
// mq_notify, AIO, SIGIO): those go with their si_code, si_pid (the sender at home: the
// job's PIDs are home's), si_uid and si_value. The rest (kill, a terminal's, SIGCHLD)
// go with kill(2), as SI_USER from this shadowd.
void deliverSignal(pid_t pid, int sig, kj::ArrayPtr<const kj::byte> info) {
  siginfo_t si;
  if (info.size() == sizeof si) memcpy(&si, info.begin(), sizeof si);
  if ((sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) && stopsByDefault(pid, sig)) {
    // Its process group here is not the one at home (the kernel would drop these three
    // if it is orphaned): stop it as they did the deputy at home, with SIGSTOP.
    KJ_SYSCALL(kill(pid, SIGSTOP));
  } else if (info.size() == sizeof si && si.si_signo == sig && si.si_code < 0 && si.si_code != SI_TKILL) {
    KJ_SYSCALL(syscall(SYS_rt_sigqueueinfo, pid, sig, &si));
  } else {
    KJ_SYSCALL(kill(pid, sig));
  }
}

// The processes of this shadowd's user in process group `group` here.
kj::Vector<pid_t> groupMembersHere(pid_t group) {
  kj::Vector<pid_t> out;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  while (struct dirent* e = readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(atoi(e->d_name));
    if (pid <= 0 || getpgid(pid) != group) continue;
    if (resources::realUidOf(pid) == getuid()) out.add(pid);
  }
  closedir(proc);
  return out;
}

// How long the group of a job that ended here is kept (Daemon::endedGroups).
constexpr uint64_t kEndedGroupKeptMs = 10000;

constexpr uint64_t kRestoreTimeoutMs = 120000;
// How long Node.setupCheck waits for the stand-ins of a job just restored here to be watched.
constexpr uint64_t kSetupCheckMs = 20000;
// Before the first bytes, the sender freezes the job (migctl send: up to 30 s) on top
// of the transfer timeout.
constexpr uint64_t kFreezeAllowanceMs = 30000;

// The first 4 KiB of a restore's log ("" when there is none): its last line says why
// the restore failed.
kj::String readText(kj::StringPtr path) {
  int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kj::str("");
  char buf[4096];
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  close(fd);
  return kj::heapString(buf, n > 0 ? static_cast<size_t>(n) : 0);
}

// A post-copy hop's freeze waits at most this long for home's clock to be measured.
constexpr uint64_t kClockWaitMs = 2000;

// What `migctl nodes` shows of this host.
void fillInfo(Daemon& d, rpc::NodeInfo::Builder info) {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  info.setHostname(host);
  info.setAddress(d.address());
  double load = 0;
  if (FILE* f = fopen("/proc/loadavg", "re")) {
    if (fscanf(f, "%lf", &load) != 1) load = 0;
    fclose(f);
  }
  info.setLoad1(load);
  info.setJobs(static_cast<uint32_t>(d.hostedJobs().size()));
  unsigned long long avail = 0;
  if (FILE* f = fopen("/proc/meminfo", "re")) {
    char line[256];
    while (fgets(line, sizeof(line), f)) {
      if (sscanf(line, "MemAvailable: %llu kB", &avail) == 1) break;
    }
    fclose(f);
  }
  info.setMemAvailableKiB(avail);
  info.setDrained(d.admission().drained);
  info.setOwnerBack(d.admission().ownerBack);
  info.setRunnable(d.runnable().averageForReader(RunnableMeter::clock()));
  info.setCpus(d.cpus());
}

// A job restored here up to "ready, not running" (its `migctl restart --migrated
// --gate-fd 3` waits at the gate), between the hop's two phases. It outlives the
// sink that made it: when the sender ends after giving the job up, its shadowd
// commits instead (Node.commitHop). Not committed within the transfer timeout: the
// copy is killed and its image deleted; the sender still had the job.
class PreparedHop {
 public:
  PreparedHop(Daemon& d, uint64_t jobId, kj::String path, kj::String logPath)
      : d(d), jobId(jobId), path(kj::mv(path)), logPath(kj::mv(logPath)) {}

  // Keeps `hop` until it is committed or its time is up.
  static void keep(kj::Own<PreparedHop> hop) {
    Daemon& d = hop->d;
    uint64_t id = hop->jobId, generation = ++lastGeneration();
    hop->generation = generation;
    all().upsert(id, kj::mv(hop), [](kj::Own<PreparedHop>& old, kj::Own<PreparedHop>&& fresh) {
      old->abort("replaced by a new hop of the same job");
      old = kj::mv(fresh);
    });
    d.tasks().add(d.io().provider->getTimer().afterDelay(d.config().transferTimeoutMs * kj::MILLISECONDS)
                      .then([&d, id, generation]() {
                        KJ_IF_MAYBE(h, all().find(id)) {
                          if ((*h)->generation != generation) return;
                          auto hop = kj::mv(*h);
                          all().erase(id);
                          hop->abort(kj::str("no commit within the transfer timeout, ", d.config().transferTimeoutMs / 1000.0,
                                             " s"));
                        }
                      }));
  }

  // Phase two: releases the job; resolves with its PID and the time it took to reach
  // its relay. Fails if no hop of this job is ready here. A hop home whose restore
  // failed while its deputy could come back resolves with why (the job's sender resumes
  // it), else with "".
  // `tree`: a tree's hop home, whose members go all or none (home_gate.h).
  struct TreeHop {
    uint64_t hop = 0;
    uint32_t members = 0;  // 0 or 1: one job, no gate
  };
  static kj::Promise<kj::Tuple<pid_t, double, kj::String>> commit(Daemon& d, uint64_t jobId, TreeHop tree);
  // The same for a hop back home (deputy/homecoming.h).
  static kj::Promise<kj::Tuple<pid_t, double, kj::String>> commitHomecoming(Daemon& d, uint64_t jobId,
                                                                            kj::Own<PreparedHop> hop, TreeHop tree);

  // A hop given up before its commit: nothing of the job ran here.
  void abort(kj::StringPtr why) {
    settled = true;
    if (!reaped) {
      kill(pid, SIGKILL);
      d.tasks().add(exited.addBranch().ignoreResult());  // reaped
    }
    unlink(path.cStr());
    unlink(logPath.cStr());
    d.hostedJobs().erase(jobId);
    d.log(kj::str("job ", jobId, ": hop cancelled before its commit (", why, "); its prepared copy killed, its image deleted"));
  }

  static kj::HashMap<uint64_t, kj::Own<PreparedHop>>& all() {
    static kj::HashMap<uint64_t, kj::Own<PreparedHop>> hops;
    return hops;
  }
  // Jobs released and not yet at their relay: a second commit (Node.commitHop after
  // the sender lost B's answer) waits for the same moment.
  static kj::HashMap<uint64_t, kj::ForkedPromise<void>>& releasing() {
    static kj::HashMap<uint64_t, kj::ForkedPromise<void>> jobs;
    return jobs;
  }

  ~PreparedHop() noexcept(false) {
    if (!settled && pid > 0 && !reaped) {  // its prepare was cancelled or failed
      kill(pid, SIGKILL);
      d.tasks().add(exited.addBranch().ignoreResult());
    }
  }

  Daemon& d;
  uint64_t jobId;
  kj::String path, logPath;
  bool settled = false;  // released or aborted
  pid_t pid = 0;
  kj::Own<kj::AsyncIoStream> gate;  // 'R' came from it; 'G' releases the job
  // A restart started before its image was complete (--image-on-gate) says 'W' on the
  // gate once it has started and waits for 'I': `started` resolves then, or when the
  // gate ends instead (what reads it next sees that); `startedRead` reads that first
  // byte (declared after `gate`, so gone before it). 'R' is read only after it.
  kj::Maybe<kj::ForkedPromise<void>> started;
  kj::Promise<void> startedRead = nullptr;
  char startedByte = 0;
  kj::ForkedPromise<int> exited = nullptr;
  bool reaped = false;  // its process ended (and was waited for): its PID is not ours
  kj::Promise<void> reapWatch = nullptr;
  uint64_t generation = 0;
  kj::Maybe<rpc::PageSource::Client> pages;  // a post-copy hop: where the missing pages come from
  bool homecoming = false;  // checked only: the job is restored into its deputy at the commit
  bool keptFrozen = false;  // a hop home whose sender keeps the job until the commit's answer

 private:
  static uint64_t& lastGeneration() {
    static uint64_t g = 0;
    return g;
  }
};

// Receives one image into the spool, then restores it in two phases (docs/design.md,
// "One hop"): done() runs `migctl restart --migrated --gate-fd 3`, which does every
// check and puts the fds in place, says so on the gate and waits there ("ready, not
// running"); commit() releases it. A transfer that stops (the sender is gone, the link
// is cut) is dropped after the transfer timeout, and a prepared job not committed
// within it too: the prepared copy killed, the (partial) image deleted, the job
// forgotten, even while the connection seems open. The sink dropped before commit (the
// sender crashed or gave up) does the same at once.
class ImageSinkImpl final : public rpc::ImageSink::Server {
 public:
  // homeClock: home's realtime clock minus ours, measured while the image arrives.
  // homecoming: this host is the job's home and its deputy is here (deputy/homecoming.h).
  // keptFrozen: its sender keeps the job until the commit is answered (JobTicket).
  ImageSinkImpl(Daemon& d, uint64_t jobId, kj::Promise<int64_t> homeClock, bool homecoming = false,
                bool keptFrozen = false)
      : d_(d), jobId_(jobId), homecoming_(homecoming), keptFrozen_(keptFrozen), homeClock_(homeClock.fork()) {
    path_ = spoolImagePath(d.config().spoolDir, jobId);
    logPath_ = spoolLogPath(d.config().spoolDir, jobId);
    fd_ = open(path_.cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    require(fd_ >= 0, kj::str("cannot create ", path_, ": ", strerror(errno)));
    armStallTimer(d.config().transferTimeoutMs + kFreezeAllowanceMs);
  }
  ~ImageSinkImpl() noexcept(false) {
    if (fd_ >= 0) close(fd_);
    // A prepared job waits for its commit (from the sender's shadowd now) or the timeout.
    if (!prepared_ && !dropped_) {
      unlink(path_.cStr());
      unlink(logPath_.cStr());
      // The job never ran here: forget it.
      d_.hostedJobs().erase(jobId_);
    }
  }

  kj::Promise<void> write(WriteContext context) override {
    require(!dropped_, "the transfer was cancelled here: no progress within the transfer timeout");
    if (context.getParams().getBytes().size() == 0) {
      // An empty write announces the image (each member of a tree moving stop-and-copy,
      // before its freeze): the restart starts now, and the sender freezes once this is
      // answered, so the starts are not inside the freeze. The freeze keeps its
      // allowance on the stall timer.
      return startedEarly();
    }
    if (!gotBytes_) {
      gotBytes_ = true;
      hopFaultPoint("recv-image", [](kj::String why) { fail(kj::mv(why)); });
      startEarly();
    }
    armStallTimer(d_.config().transferTimeoutMs);
    auto bytes = context.getParams().getBytes();
    // Checked as it arrives (a bad byte ends the hop now, not at the restart), so the
    // restart does not read the whole image again while the job is frozen.
    verifier_.feed(bytes.begin(), bytes.size());
    const kj::byte* p = bytes.begin();
    size_t left = bytes.size();
    while (left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      require(n > 0, kj::str("cannot write ", path_, ": ", strerror(errno)));
      p += n;
      left -= static_cast<size_t>(n);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> done(DoneContext context) override {
    require(!dropped_, "the transfer was cancelled here: no progress within the transfer timeout");
    require(fd_ >= 0, "image already complete");
    require(verifier_.complete(), kj::str("the image ended after ", verifier_.bytesSeen(), " bytes, without its end section"));
    hopFaultPoint("recv-done", [](kj::String why) { fail(kj::mv(why)); });
    stall_ = nullptr;  // the restore has its own limit
    // No fsync: the restore reads (and maps) the image from the page cache, and the
    // image is worth nothing after a crash of this host, which ends the job anyway.
    close(fd_);
    fd_ = -1;
    HostedJob* job = nullptr;
    KJ_IF_MAYBE(j, d_.hostedJobs().find(jobId_)) { job = j->get(); }
    require(job != nullptr, "the job was dropped during the transfer");
    return homeClock_.addBranch().then(
        [this, context](int64_t realtimeOffsetNs) mutable { return restore(context, realtimeOffsetNs); });
  }

  // Runs `migctl restart --migrated --gate-fd 3` on the complete image; resolves once
  // it waits at the gate, every check passed.
  kj::Promise<void> restore(DoneContext context, int64_t realtimeOffsetNs) {
    HostedJob* job = nullptr;
    KJ_IF_MAYBE(j, d_.hostedJobs().find(jobId_)) { job = j->get(); }
    require(job != nullptr, "the job was dropped during the transfer");
    if (homecoming_) return checkHomecoming(context);
    if (realtimeOffsetNs != 0) {
      d_.log(kj::str("job ", jobId_, ": home's realtime clock is ", realtimeOffsetNs / 1000000,
                     " ms ahead of this host's"));
    }
    kj::Own<PreparedHop> hop;
    kj::Promise<void> imageTold = kj::READY_NOW;
    KJ_IF_MAYBE(early, early_) {
      // Started before the image was complete: it reads the image once told it is.
      hop = kj::mv(*early);
      early_ = nullptr;
      static const char image = 'I';
      imageTold = hop->gate->write(&image, 1);
    } else {
      hop = startRestart(*job, realtimeOffsetNs, false);
    }
    return imageTold
        .then([this]() {
          KJ_IF_MAYBE(j, d_.hostedJobs().find(jobId_)) { return (*j)->link->jobPid(); }
          fail(kj::str("the job was dropped during the transfer"));
        })
        .then([this, context, hop = kj::mv(hop)](pid_t pid) mutable {
          KJ_IF_MAYBE(j, d_.hostedJobs().find(jobId_)) { (*j)->realPid = pid; }
          hop->pid = pid;
          return waitReady(context, pid, kj::mv(hop));
        });
  }

  // Runs `migctl restart --migrated --gate-fd 3` of this hop's image under the job's
  // link process; with imageLater before the image is complete (--image-on-gate: it
  // reads the image once 'I' comes on the gate).
  kj::Own<PreparedHop> startRestart(HostedJob& job, int64_t realtimeOffsetNs, bool imageLater) {
    ChildSpec spec;
    spec.argv.add(kj::str(d_.config().migctl));
    spec.argv.add(kj::str("restart"));
    spec.argv.add(kj::str(path_));
    spec.argv.add(kj::str("--migrated"));
    spec.argv.add(kj::str("--data-verified"));
    spec.argv.add(kj::str("--gate-fd"));
    spec.argv.add(kj::str("3"));
    if (imageLater) spec.argv.add(kj::str("--image-on-gate"));
    spec.argv.add(kj::str("--relay"));
    spec.argv.add(linkSocketPath(d_.config().relayPath, jobId_));  // its link process's (link_process.h)
    spec.argv.add(kj::str("--job-id"));
    spec.argv.add(kj::str(jobId_));
    spec.argv.add(kj::str("--realtime-offset-ns"));
    spec.argv.add(kj::str(realtimeOffsetNs));
    spec.env.add(kj::str(kTokenEnv, "=", hex(job.token)));
    addNetworkArgs(spec.argv, job.network);
    for (auto& p : d_.config().localPaths) {
      spec.argv.add(kj::str("--local-path"));
      spec.argv.add(kj::str(p));
    }
    if (pageSource_ != nullptr) {
      // A page that does not come within the transfer timeout ends the job (never run
      // on without its memory).
      spec.argv.add(kj::str("--postcopy"));
      spec.argv.add(kj::str(d_.config().transferTimeoutMs));
    }
    // The gate: the restart says 'R' when ready and runs the job on 'G'; the end of
    // this socket (shadowd gone, the hop dropped) without 'G' makes it delete the
    // image and exit, the job never run.
    int gate[2];
    require(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, gate) == 0,
            kj::str("cannot make the restore's gate: ", strerror(errno)));
    // The restart runs under the job's link process, which stays the job's parent here
    // and carries its calls home (link_process.h).
    auto hop = kj::heap<PreparedHop>(d_, jobId_, kj::str(path_), kj::str(logPath_));
    {
      KJ_ON_SCOPE_FAILURE({ close(gate[0]); close(gate[1]); });
      job.link = kj::heap<LinkProcess>(d_, jobId_, job.home, spec, gate[1], logPath_);
    }
    close(gate[1]);
    hop->gate = d_.io().lowLevelProvider->wrapSocketFd(gate[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    if (imageLater) {
      auto paf = kj::newPromiseAndFulfiller<void>();
      hop->started = paf.promise.fork();
      hop->startedRead = hop->gate->tryRead(&hop->startedByte, 1, 1)
                             .then([](size_t) {}, [](kj::Exception&&) {})
                             .then([f = kj::mv(paf.fulfiller)]() mutable { f->fulfill(); })
                             .eagerlyEvaluate(nullptr);
    }
    hop->pages = kj::mv(pageSource_);
    hop->exited = job.link->exited().fork();
    hop->reapWatch = hop->exited.addBranch().then([h = hop.get()](int) { h->reaped = true; }).eagerlyEvaluate(nullptr);
    return hop;
  }

  // The restart of the job (its process `pid` here) says 'R' on its gate once ready.
  kj::Promise<void> waitReady(DoneContext context, pid_t pid, kj::Own<PreparedHop> hop) {
    double started = nowSeconds();

    auto failedEarly = hop->exited.addBranch().then([this](int status) {
      auto why = lastLine(readLog());
      if (why.size() == 0) why = kj::str("the restore ended with ", describeStatus(status));
      fail(kj::str("restore failed on ", d_.address(), ": ", why));
    });
    auto timeout = d_.io().provider->getTimer().afterDelay(kRestoreTimeoutMs * kj::MILLISECONDS).then([]() {
      fail(kj::str("the restore did not get ready within 120 s"));
    });
    auto& gateStream = *hop->gate;
    kj::Promise<void> afterW = kj::READY_NOW;  // a restart started early says 'W' before 'R'
    KJ_IF_MAYBE(s, hop->started) { afterW = s->addBranch(); }
    auto ready = afterW.then([this, &gateStream]() { return gateStream.tryRead(&gateByte_, 1, 1); }).then([this](size_t n) {
      if (n == 1 && gateByte_ == 'R') return;
      // The gate closed as the restart ended (often before its exit is seen): its
      // log's last line says why (e.g. a System V key taken here).
      auto why = lastLine(readLog());
      fail(kj::str("restore failed on ", d_.address(), ": ",
                   why.size() > 0 ? kj::mv(why) : kj::str("the restore ended without getting ready")));
    });
    return ready.exclusiveJoin(kj::mv(failedEarly))
        .exclusiveJoin(kj::mv(timeout))
        .then([this, context, pid, started, hop = kj::mv(hop)]() mutable {
          hopFaultPoint("recv-prepared", [](kj::String why) { fail(kj::mv(why)); });
          context.getResults().setRealPid(pid);
          context.getResults().setRestoreMs((nowSeconds() - started) * 1000);
          d_.log(kj::str("job ", jobId_, " is ready here as PID ", pid, ", waiting for its sender to commit"));
          prepared_ = true;
          PreparedHop::keep(kj::mv(hop));
        });  // failed: `hop` goes with this promise, and kills the restart (nothing of it ran)
  }

  // A post-copy hop (resources/network_page_source.h): the restored job's page server
  // fetches the pages the image leaves out from `source` through this shadowd.
  kj::Promise<void> postcopy(PostcopyContext context) override {
    require(!dropped_, "the transfer was cancelled here: no progress within the transfer timeout");
    require(!gotBytes_, "post-copy must be asked before the image");
    bool allowed = geteuid() == 0;
    if (FILE* f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "re")) {
      int v = 0;
      if (fscanf(f, "%d", &v) == 1 && v == 1) allowed = true;
      fclose(f);
    }
    require(allowed, kj::str("post-copy is not possible on ", d_.address(),
                             ": its shadowd is not root and vm.unprivileged_userfaultfd is 0 (a job's system calls "
                             "must be able to wait for its pages)"));
    pageSource_ = context.getParams().getSource();
    // The sender freezes the job once this returns: home's clock is measured first (it
    // began with receive), so that the restore does not wait for it while the job is
    // frozen (a post-copy image arrives in milliseconds, before that measure is done).
    // A slow measure is not waited for long: the restore waits for the rest, as before.
    // The restart starts now too, off the freeze (startedEarly).
    return startedEarly();
  }

  // Phase one of a hop back home: every check of the restart, in a child (`migctl
  // restart --homecoming --check-only`); the restore itself is the deputy's, in its own
  // process, once the hop is committed (PreparedHop::commitHomecoming).
  kj::Promise<void> checkHomecoming(DoneContext context) {
    ChildSpec spec;
    spec.argv.add(kj::str(d_.config().migctl));
    spec.argv.add(kj::str("restart"));
    spec.argv.add(kj::str(path_));
    spec.argv.add(kj::str("--homecoming"));
    spec.argv.add(kj::str("--check-only"));
    spec.argv.add(kj::str("--data-verified"));
    int log = open(logPath_.cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    spec.stderrFd = log;
    pid_t pid;
    {
      KJ_ON_SCOPE_FAILURE(if (log >= 0) close(log));
      pid = spawnChild(spec);
    }
    if (log >= 0) close(log);
    double started = nowSeconds();
    auto timeout = d_.io().provider->getTimer().afterDelay(kRestoreTimeoutMs * kj::MILLISECONDS).then([pid]() -> int {
      kill(pid, SIGKILL);
      fail(kj::str("the checks of the restore did not end within 120 s"));
    });
    return childExit(d_.eventPort(), pid).exclusiveJoin(kj::mv(timeout)).then([this, context, started](int status) mutable {
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        auto why = lastLine(readLog());
        if (why.size() == 0) why = kj::str("the checks ended with ", describeStatus(status));
        fail(kj::str("restore failed on ", d_.address(), ": ", why));
      }
      hopFaultPoint("recv-prepared", [](kj::String why) { fail(kj::mv(why)); });
      auto hop = kj::heap<PreparedHop>(d_, jobId_, kj::str(path_), kj::str(logPath_));
      hop->homecoming = true;
      hop->keptFrozen = keptFrozen_;
      hop->reaped = true;  // no process of its own: nothing to kill
      pid_t deputy = 0;
      KJ_IF_MAYBE(h, d_.homeJobs().find(jobId_)) { deputy = (*h)->vpid; }
      context.getResults().setRealPid(deputy);
      context.getResults().setRestoreMs((nowSeconds() - started) * 1000);
      d_.log(kj::str("job ", jobId_, " comes home: its image checked, waiting for its sender to commit"));
      prepared_ = true;
      PreparedHop::keep(kj::mv(hop));
    });
  }

  kj::Promise<void> commit(CommitContext context) override {
    require(!dropped_, "the transfer was cancelled here: no progress within the transfer timeout");
    require(prepared_, "the job is not ready here (done first)");
    auto p = context.getParams();
    PreparedHop::TreeHop tree{p.getTreeHop(), p.getTreeMembers()};
    return PreparedHop::commit(d_, jobId_, tree).then([context](kj::Tuple<pid_t, double, kj::String> r) mutable {
      context.getResults().setRealPid(kj::get<0>(r));
      context.getResults().setRestoreMs(kj::get<1>(r));
      context.getResults().setHomeFailed(kj::get<2>(r));
    });
  }

  // When the job's process ends: unless it moved on, tell its home the status.
  static void watchJob(Daemon& d, uint64_t jobId, kj::Promise<int> exited, kj::String image) {
    d.tasks().add(exited.then([&d, jobId, image = kj::mv(image)](int status) -> kj::Promise<void> {
      unlink(image.cStr());
      unlink(kj::str(image.slice(0, image.size() - 4), ".log").cStr());  // job-ID.img -> job-ID.log
      KJ_IF_MAYBE(j, d.hostedJobs().find(jobId)) {
        auto job = kj::mv(*j);
        d.hostedJobs().erase(jobId);
        if (job->onGone.get() != nullptr) job->onGone->fulfill();
        // A job that left was ended by its sender with the checkpointed status; one
        // that ends by itself while leaving (during pre-copy's rounds, which run for
        // seconds) ended here, and its hop fails.
        const bool left = job->leaving && WIFEXITED(status) && WEXITSTATUS(status) == control::kCheckpointedStatus;
        // Its link process tells home, once its last writes have run there; also the end
        // of a job whose pages could not come (killed): its sender at home ends the
        // deputy the same way, but a sender that died cannot, and the parent must not
        // wait for ever (home takes whichever comes first).
        if (job->link) job->link->answerEnd(!left);
        if (left) {
          d.log(kj::str("job ", jobId, " left this host"));
          return kj::READY_NOW;
        }
        d.log(kj::str("job ", jobId, " ended here: ", describeStatus(status)));
        // It led its group here (its restart's setsid): its children born here are
        // still in it, for the group signals its home's stand-in passes on.
        if (job->realPid > 0) {
          d.endedGroups().upsert(jobId, Daemon::EndedGroup{kj::heapArray<kj::byte>(job->token), job->realPid},
                                 [](Daemon::EndedGroup& old, Daemon::EndedGroup&& fresh) { old = kj::mv(fresh); });
          d.tasks().add(d.io().provider->getTimer().afterDelay(kEndedGroupKeptMs * kj::MILLISECONDS).then([&d, jobId]() {
            d.endedGroups().erase(jobId);
          }));
        }
        if (job->link && !job->link->lost()) return kj::READY_NOW;
        // Its last writes go home before its end does: the parent reads them first.
        auto settled = job->calls->settled();
        return settled.then([&d, jobId, status, job = kj::mv(job)]() mutable {
          auto told = d.peer(job->home).then([jobId, status, token = kj::mv(job->token)](rpc::Node::Client home) {
            auto req = home.jobEndedRequest();
            req.setJobId(jobId);
            req.setToken(token);
            req.setStatus(status);
            return req.send().ignoreResult();
          });
          // Home's shadowd restarted or gone: the deputy hears it over the direct link.
          return told.catch_([&d, jobId, status, calls = kj::mv(job->calls)](kj::Exception&& e) mutable {
            d.log(kj::str("job ", jobId, ": its home did not take its end (", oneLine(e.getDescription()), ")"));
            return calls->tellEndedDirectly(status).attach(kj::mv(calls));
          });
        });
      }
      return kj::READY_NOW;
    }));
  }

 private:
  // Every hop but one home starts the job's link process and its restart at the image's
  // first bytes, or before them when the sender asks (postcopy(), an empty write), as
  // soon as home's clock is measured: their exec and library loading (10-30 ms, more at
  // load) are then done before the freeze for pre-copy, post-copy and an announced
  // stop-and-copy, during the transfer for other stop-and-copy, not in phase one.
  // The restart says 'W' on its gate once started, waits there for 'I' (done) before it
  // reads the image, and exits if the gate closes instead. One that could not be
  // started is started by done().
  void startEarly() {
    if (homecoming_ || early_ != nullptr || earlyAsked_) return;
    earlyAsked_ = true;
    auto started = homeClock_.addBranch()
                       .then([this](int64_t realtimeOffsetNs) -> kj::Promise<void> {
                         HostedJob* job = nullptr;
                         KJ_IF_MAYBE(j, d_.hostedJobs().find(jobId_)) { job = j->get(); }
                         // fd_ closed: done() came first and starts the restart itself.
                         if (job == nullptr || dropped_ || fd_ < 0 || early_ != nullptr) return kj::READY_NOW;
                         auto hop = startRestart(*job, realtimeOffsetNs, true);
                         auto w = KJ_ASSERT_NONNULL(hop->started).addBranch().catch_([](kj::Exception&&) {});  // dropped meanwhile
                         early_ = kj::mv(hop);
                         return kj::mv(w);
                       })
                       .catch_([this](kj::Exception&& e) {
                         d_.log(kj::str("job ", jobId_, ": its restart could not start early (",
                                        oneLine(e.getDescription()), "); it starts with the complete image"));
                       })
                       .fork();
    earlyStart_ = started.addBranch().eagerlyEvaluate(nullptr);
    earlyStarted_ = kj::mv(started);
  }

  // startEarly(), answered once that restart has started and waits for its image (its
  // 'W'), or could not start, or after kClockWaitMs (then the freeze goes on beside it).
  kj::Promise<void> startedEarly() {
    startEarly();
    KJ_IF_MAYBE(started, earlyStarted_) {
      return started->addBranch().exclusiveJoin(
          d_.io().provider->getTimer().afterDelay(kClockWaitMs * kj::MILLISECONDS));
    }
    return kj::READY_NOW;
  }

  // No write within `ms`: the transfer is dropped.
  void armStallTimer(uint64_t ms) {
    stall_ = d_.io().provider->getTimer().afterDelay(ms * kj::MILLISECONDS).then([this]() { drop(); })
                 .eagerlyEvaluate(nullptr);
  }

  void drop() {
    dropped_ = true;
    early_ = nullptr;  // its gate closes: the restart started early exits
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    struct stat st {};
    auto got = stat(path_.cStr(), &st) == 0 ? kj::str(st.st_size, " bytes") : kj::str("nothing");
    unlink(path_.cStr());
    unlink(logPath_.cStr());
    d_.hostedJobs().erase(jobId_);
    d_.log(kj::str("job ", jobId_, ": transfer cancelled, no progress for ", d_.config().transferTimeoutMs / 1000.0,
                   " s (the sender stopped answering); its partial image (", got, ") deleted"));
  }

  kj::String readLog() { return readText(logPath_); }

  Daemon& d_;
  uint64_t jobId_;
  bool homecoming_;
  bool keptFrozen_;
  kj::String path_;
  kj::String logPath_;
  int fd_ = -1;
  bool dropped_ = false;
  bool gotBytes_ = false;
  bool prepared_ = false;     // a PreparedHop holds the job now
  char gateByte_ = 0;
  kj::ForkedPromise<int64_t> homeClock_;
  kj::Maybe<rpc::PageSource::Client> pageSource_;
  kj::Maybe<kj::Own<PreparedHop>> early_;  // the restart started before the image was complete
  kj::Promise<void> earlyStart_ = nullptr;  // startEarly(), waiting for home's clock
  bool earlyAsked_ = false;                 // startEarly() ran
  kj::Maybe<kj::ForkedPromise<void>> earlyStarted_;  // that restart said 'W' (or could not start)
  kj::Promise<void> stall_ = nullptr;  // last: it calls drop(), which uses the rest
  image::StreamVerifier verifier_;
};

// Post-copy: answers the page server's requests (resources/network_page_source.h) on
// the gate, one at a time, with pages fetched from the sender. A broken link to the
// sender (cut, reset) does not end the job: the request waits until the sender comes back
// over a new connection (Node.resumePages, resumePostcopy below), which replaces
// `source` and asks the same pages again there; the job's faulting threads stay blocked
// meanwhile. Only a request not answered within the transfer timeout from its first
// asking is a failure, logged and told to the page server, which kills the job with one
// line rather than let it run on without its pages.
class PageRelay {
 public:
  using Answer = capnp::Response<rpc::PageSource::ReadResults>;

  PageRelay(Daemon& d, uint64_t jobId, kj::Array<kj::byte> token, kj::Own<kj::AsyncIoStream> gate,
            rpc::PageSource::Client source)
      : d(d), jobId(jobId), token(kj::mv(token)), gate(kj::mv(gate)), source(kj::mv(source)) {
    active().upsert(jobId, this, [this](PageRelay*& old, PageRelay*&&) { old = this; });
  }
  ~PageRelay() noexcept(false) {
    KJ_IF_MAYBE(p, active().find(jobId)) {
      if (*p == this) active().erase(jobId);
    }
    // Kept a while for a sender that comes back after the end (its finished, or this
    // failure, may have been lost with the old link).
    const uint64_t generation = ++lastGeneration();
    outcomes().upsert(jobId, Outcome{everyPage, kj::mv(token), generation},
                      [](Outcome& old, Outcome&& fresh) { old = kj::mv(fresh); });
    d.tasks().add(d.io().provider->getTimer().afterDelay(2 * d.config().transferTimeoutMs * kj::MILLISECONDS)
                      .then([jobId = jobId, generation]() {
                        KJ_IF_MAYBE(o, outcomes().find(jobId)) {
                          if (o->generation == generation) outcomes().erase(jobId);
                        }
                      }));
  }

  struct Outcome {
    bool everyPage;  // the page server had every page; else the job was ended here
    kj::Array<kj::byte> token;
    uint64_t generation;
  };
  static kj::HashMap<uint64_t, PageRelay*>& active() {
    static kj::HashMap<uint64_t, PageRelay*> relays;
    return relays;
  }
  static kj::HashMap<uint64_t, Outcome>& outcomes() {
    static kj::HashMap<uint64_t, Outcome> ended;
    return ended;
  }

  bool tokenIs(kj::ArrayPtr<const kj::byte> t) const {
    return t.size() == token.size() && memcmp(t.begin(), token.begin(), t.size()) == 0;
  }

  // The sender came back over a new connection: pages come from `fresh` now, and a
  // request that waits is asked again there.
  void resume(rpc::PageSource::Client fresh) {
    source = kj::mv(fresh);
    ++resumes;
    if (waiting) {
      d.log(kj::str("job ", jobId, ": post-copy: its sender came back over a new connection; the pages the job waits "
                    "for are asked again"));
    }
    KJ_IF_MAYBE(f, resumed) {
      if ((*f)->isWaiting()) (*f)->fulfill();
    }
  }

  kj::Promise<void> loop() {
    return gate->tryRead(&req, sizeof(req), sizeof(req)).then([this](size_t n) -> kj::Promise<void> {
      if (n < sizeof(req)) return serverEnded();
      if (req.len == 0) {
        everyPage = true;
        auto done = source.finishedRequest().send().ignoreResult();
        if (bytes > 0) {
          d.log(kj::str("job ", jobId, ": post-copy done, ", bytes >> 20, " MiB of its memory fetched from home in ",
                        static_cast<int64_t>((nowSeconds() - started) * 1000), " ms",
                        resumes > 0 ? kj::str(" (its sender came back ", resumes, " times)") : kj::str("")));
        }
        reply = resources::PageReply{0, 0, 0, 0};
        return done.catch_([this](kj::Exception&& e) {
                     // (a hop whose image held every page: its sender did not wait; a
                     // sender that comes back learns it from resumePages)
                     if (bytes == 0) return;
                     d.log(kj::str("job ", jobId, ": post-copy: home did not take the end of its transfer (",
                                   oneLine(e.getDescription()), ")"));
                   })
            .then([this]() { return gate->write(&reply, sizeof(reply)).catch_([](kj::Exception&&) {}); });
      }
      if (req.len > resources::kMaxPageRequest || req.len % 4096 != 0) {
        return failed(kj::str("a page request of ", req.len, " bytes"));
      }
      auto& timer = d.io().provider->getTimer();
      const uint64_t limit = d.config().transferTimeoutMs;
      const double asked = nowSeconds();
      waiting = true;
      // Said once a request waits noticeably (the link may be broken): the job's
      // threads that touch those pages are blocked, not failed.
      const uint64_t noteMs = std::min<uint64_t>(1000, limit / 3);
      auto note = timer.afterDelay(noteMs * kj::MILLISECONDS).then([this, noteMs, limit]() -> kj::Promise<Answer> {
        stall(kj::str("no answer from its sender for ", noteMs / 1000.0, " s"), limit);
        return kj::Promise<Answer>(kj::NEVER_DONE);
      });
      return ask(limit)
          .exclusiveJoin(kj::mv(note))
          .exclusiveJoin(timer.afterDelay(limit * kj::MILLISECONDS).then([limit]() -> Answer {
            fail(kj::str("home did not answer for ", limit / 1000.0, " s"));
          }))
          .then(
              [this, asked](Answer&& got) -> kj::Promise<void> {
                waiting = false;
                auto data = got.getBytes();
                if (data.size() != req.len) return failed(kj::str("home sent ", data.size(), " bytes for ", req.len));
                if (stalled) {
                  stalled = false;
                  d.log(kj::str("job ", jobId, ": post-copy: its pages come again, after ",
                                static_cast<int64_t>((nowSeconds() - asked) * 1000), " ms without"));
                }
                bytes += req.len;
                reply = resources::PageReply{req.addr, req.len, 0, 0};
                auto pieces = kj::heapArray<kj::ArrayPtr<const kj::byte>>(2);
                pieces[0] = kj::arrayPtr(reinterpret_cast<const kj::byte*>(&reply), sizeof(reply));
                pieces[1] = data;
                // (evalNow: a write to a closed socket throws at once)
                auto written = kj::evalNow([&]() { return gate->write(pieces); });
                return written.attach(kj::mv(pieces), kj::mv(got))
                    .then([this]() { return loop(); }, [this](kj::Exception&&) { return serverEnded(); });
              },
              [this](kj::Exception&& e) -> kj::Promise<void> {
                waiting = false;
                return failed(oneLine(e.getDescription()));
              });
    });
  }

 private:
  // The page server ended without saying it has every page (its gate closed under a
  // read or a reply): it was killed, or crashed. Its guard keeps the missing pages
  // missing and kills the job (resources/lazy_pages.cc); the job is killed here too,
  // should that guard be gone as well.
  kj::Promise<void> serverEnded() {
    kj::StringPtr what = "the job had ended";
    KJ_IF_MAYBE(j, d.hostedJobs().find(jobId)) {
      if ((*j)->realPid > 0) kill((*j)->realPid, SIGKILL);
      what = "the job is killed rather than let it read missing pages as zeros";
    }
    d.log(kj::str("job ", jobId, ": post-copy: its page server ended before every page was here; ", what));
    return kj::READY_NOW;
  }

  // The request's pages from the current source; a broken link waits for the next
  // source (resume) and asks there. Any other failure is the request's.
  kj::Promise<Answer> ask(uint64_t limit) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    resumed = kj::mv(paf.fulfiller);
    auto r = source.readRequest();
    r.setAddr(req.addr);
    r.setLen(req.len);
    auto answer = r.send().then([](Answer&& a) -> kj::Promise<Answer> { return kj::mv(a); },
                                [this, limit](kj::Exception&& e) -> kj::Promise<Answer> {
                                  if (e.getType() != kj::Exception::Type::DISCONNECTED) {
                                    return kj::Promise<Answer>(kj::mv(e));
                                  }
                                  stall(kj::str("the link to its sender broke (", oneLine(e.getDescription()), ")"),
                                        limit);
                                  return kj::Promise<Answer>(kj::NEVER_DONE);
                                });
    auto again = paf.promise.then([this, limit]() { return ask(limit); });
    return answer.exclusiveJoin(kj::mv(again));
  }

  void stall(kj::String why, uint64_t limit) {
    if (stalled) return;
    stalled = true;
    d.log(kj::str("job ", jobId, ": post-copy: ", why, "; the job waits on its pages for its sender to come back (up to ",
                  limit / 1000.0, " s)"));
  }

  kj::Promise<void> failed(kj::String why) {
    auto text = kj::str("cannot fetch its pages from home: ", why);
    d.log(kj::str("job ", jobId, ": post-copy: ", text, "; its page server kills it (",
                  bytes >> 20, " MiB had come)"));
    reply = resources::PageReply{req.addr, 0, 1, static_cast<uint32_t>(text.size())};
    auto pieces = kj::heapArray<kj::ArrayPtr<const kj::byte>>(2);
    pieces[0] = kj::arrayPtr(reinterpret_cast<const kj::byte*>(&reply), sizeof(reply));
    pieces[1] = text.asPtr().asBytes();
    auto written = gate->write(pieces);
    // The page server may have given up already (its own timeout is the same).
    return written.attach(kj::mv(pieces), kj::mv(text)).catch_([](kj::Exception&&) {});
  }

  static uint64_t& lastGeneration() {
    static uint64_t g = 0;
    return g;
  }

  Daemon& d;
  uint64_t jobId;
  kj::Array<kj::byte> token;
  kj::Own<kj::AsyncIoStream> gate;
  rpc::PageSource::Client source;
  resources::PageRequest req{};
  resources::PageReply reply{};
  uint64_t bytes = 0;
  double started = nowSeconds();
  bool everyPage = false;  // the page server said it needs no more
  bool waiting = false;    // a request is being asked
  bool stalled = false;    // ... and waited long enough to say so
  uint32_t resumes = 0;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> resumed;  // fulfilled: ask the waiting request again
};

kj::Promise<void> relayPages(Daemon& d, uint64_t jobId, kj::Own<kj::AsyncIoStream> gate, rpc::PageSource::Client source) {
  kj::Array<kj::byte> token;
  KJ_IF_MAYBE(j, d.hostedJobs().find(jobId)) { token = kj::heapArray<kj::byte>((*j)->token); }
  auto relay = kj::heap<PageRelay>(d, jobId, kj::mv(token), kj::mv(gate), kj::mv(source));
  auto& r = *relay;
  return r.loop().attach(kj::mv(relay)).catch_([&d, jobId](kj::Exception&& e) {
    d.log(kj::str("job ", jobId, ": post-copy page relay ended: ", oneLine(e.getDescription())));
  });
}

// Node.resumePages: the sender of a post-copy hop here is back over a new connection.
// Returns whether every page had come already.
bool resumePostcopy(uint64_t jobId, kj::ArrayPtr<const kj::byte> token, rpc::PageSource::Client source) {
  KJ_IF_MAYBE(r, PageRelay::active().find(jobId)) {
    require((*r)->tokenIs(token), "no post-copy transfer of that job here (or a wrong job token)");
    (*r)->resume(kj::mv(source));
    return false;
  }
  KJ_IF_MAYBE(o, PageRelay::outcomes().find(jobId)) {
    require(o->token.size() == token.size() && memcmp(o->token.begin(), token.begin(), token.size()) == 0,
            "no post-copy transfer of that job here (or a wrong job token)");
    require(o->everyPage, kj::str("job ", jobId, "'s pages could not come here: it was ended"));
    return true;
  }
  fail(kj::str("no post-copy transfer of job ", jobId, " here"));
}

kj::Promise<kj::Tuple<pid_t, double, kj::String>> PreparedHop::commit(Daemon& d, uint64_t jobId, TreeHop tree) {
  kj::Own<PreparedHop> hop;
  KJ_IF_MAYBE(h, all().find(jobId)) {
    hop = kj::mv(*h);
    all().erase(jobId);
  } else {
    fail(kj::str("job ", jobId, " is not ready here (its hop was cancelled, or never got ready)"));
  }
  hopFaultPoint("recv-commit", [](kj::String why) { fail(kj::mv(why)); });
  if (hop->homecoming) return commitHomecoming(d, jobId, kj::mv(hop), tree);
  HostedJob* job = nullptr;
  KJ_IF_MAYBE(j, d.hostedJobs().find(jobId)) { job = j->get(); }
  require(job != nullptr, "the job was dropped here");
  auto paf = kj::newPromiseAndFulfiller<void>();
  job->onRunning = kj::mv(paf.fulfiller);
  // From here the job is this host's: its end is reported home (watchJob).
  ImageSinkImpl::watchJob(d, jobId, hop->exited.addBranch(), kj::str(hop->path));
  auto started = nowSeconds();
  pid_t pid = hop->pid;
  auto failedEarly = hop->exited.addBranch().then([&d, log = kj::str(hop->logPath)](int status) {
    kj::String why = lastLine(readText(log));
    if (why.size() == 0) why = kj::str("the released job ended with ", describeStatus(status));
    fail(kj::str("the job ended on ", d.address(), " as it started: ", why));
  });
  auto timeout = d.io().provider->getTimer().afterDelay(kRestoreTimeoutMs * kj::MILLISECONDS).then([]() {
    fail(kj::str("the released job did not reach its relay within 120 s"));
  });
  static const char go = 'G';
  hop->settled = true;
  auto running = paf.promise.fork();
  auto runningHere = running.addBranch();
  // Kept until the job reaches its relay (or fails to), whatever becomes of this call.
  d.tasks().add(running.addBranch().then([jobId]() { releasing().erase(jobId); },
                                         [jobId](kj::Exception&&) { releasing().erase(jobId); }));
  releasing().upsert(jobId, kj::mv(running), [](auto& old, auto&& fresh) { old = kj::mv(fresh); });
  auto released = hop->gate->write(&go, 1);
  return released
      .then([&d, jobId, h = hop.get(), running = kj::mv(runningHere)]() mutable {
        KJ_IF_MAYBE(source, h->pages) {
          // Post-copy: the job's page server asks for its pages on the gate from now on.
          d.tasks().add(relayPages(d, jobId, kj::mv(h->gate), kj::mv(*source)));
          h->pages = nullptr;
        }
        hopFaultPoint("recv-released", [](kj::String why) { fail(kj::mv(why)); });
        return kj::mv(running);
      })
      .exclusiveJoin(kj::mv(failedEarly))
      .exclusiveJoin(kj::mv(timeout))
      .then([&d, jobId, started, pid]() {
        d.log(kj::str("job ", jobId, " runs here as PID ", pid));
        return kj::tuple(pid, (nowSeconds() - started) * 1000, kj::str(""));
      })
      .attach(kj::mv(hop));
}

// argv[0] of process `pid` ("" when it is gone or a zombie).
kj::String firstArg(pid_t pid) {
  int fd = open(kj::str("/proc/", pid, "/cmdline").cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kj::str("");
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  return kj::heapString(buf, n > 0 ? strnlen(buf, static_cast<size_t>(n)) : 0);
}

// Whether process `pid` still holds its deputy's come-back table (deputy/homecoming.h):
// the restorer closes it only past its last step that can fail. (Unreadable: no.)
bool holdsComeBack(pid_t pid) {
  auto dir = kj::str("/proc/", pid, "/fd");
  DIR* d = opendir(dir.cStr());
  if (d == nullptr) return false;
  bool held = false;
  while (struct dirent* e = readdir(d)) {
    char target[64] = {};
    if (e->d_name[0] == '.') continue;
    ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);
    if (n > 0 && strncmp(target, "/memfd:mig-come-back", 20) == 0) held = true;
  }
  closedir(d);
  return held;
}

// Until process `pid` (the deputy) runs the job: its argv[0] is no longer the deputy's,
// migctl's or the restorer's (the restorer puts the job's command line back), and, when
// the deputy may come back, the restorer has given up its come-back table (it sets the
// command line before steps that can still fail). Looked at every 10 ms: nothing tells
// of an exec but /proc. Fails if the process ended.
kj::Promise<void> untilJobRuns(Daemon& d, pid_t pid, bool comeBack, uint64_t leftMs) {
  auto arg = firstArg(pid);
  kj::StringPtr base = arg;
  KJ_IF_MAYBE(slash, arg.findLast('/')) { base = arg.slice(*slash + 1); }
  if (arg.size() == 0 && !resources::processRuns(pid)) {
    fail(kj::str("the job's process at home (PID ", pid, ") ended as it was restored"));
  }
  if (arg.size() > 0 && arg != d.config().deputy && arg != d.config().migctl && base != "mig-deputy" &&
      base != "migctl" && base != "mig-restore" && !(comeBack && holdsComeBack(pid))) {
    return kj::READY_NOW;
  }
  if (leftMs == 0) fail(kj::str("the job was not restored at home within 120 s"));
  constexpr uint64_t kLookMs = 10;
  return d.io().provider->getTimer().afterDelay(kLookMs * kj::MILLISECONDS).then([&d, pid, comeBack, leftMs]() {
    return untilJobRuns(d, pid, comeBack, leftMs > kLookMs ? leftMs - kLookMs : 0);
  });
}

kj::Promise<kj::Tuple<pid_t, double, kj::String>> PreparedHop::commitHomecoming(Daemon& d, uint64_t jobId,
                                                                                  kj::Own<PreparedHop> hop,
                                                                                  TreeHop tree) {
  HomeJob* home = nullptr;
  KJ_IF_MAYBE(j, d.homeJobs().find(jobId)) { home = j->get(); }
  require(home != nullptr, kj::str("job ", jobId, " has no deputy here any more"));
  hop->settled = true;
  d.hostedJobs().erase(jobId);  // it never was a guest here
  // A tree's members go all or none: each restorer waits at the tree's gate for every
  // other (home_gate.h). One whose hop was called off already stays its deputy.
  const bool gated = tree.members > 1;
  kj::String gate;
  if (gated) {
    KJ_IF_MAYBE(g, joinHomeGate(d, tree.hop, tree.members, home->vpid)) {
      gate = kj::mv(*g);
    } else {
      unlink(hop->path.cStr());
      unlink(hop->logPath.cStr());
      return kj::tuple(home->vpid, 0.0,
                       kj::str("called off: another member of the tree could not be restored at home"));
    }
  }
  const pid_t pid = home->vpid;
  const bool comeBack = hop->keptFrozen || gated;
  const double started = nowSeconds();
  d.log(kj::str("job ", jobId, " (PID ", pid, ") comes home: its deputy becomes it"));
  // A restart that fails (up to its restorer's last step that can fail) execs the
  // deputy again, which registers again (deputy/homecoming.h): then the hop home failed
  // and the job's sender resumes it where it was.
  auto back = kj::newPromiseAndFulfiller<void>();
  home->cameBack = kj::mv(back.fulfiller);
  const auto& fault = hopFault();
  // The steps of the deputy's restart and its restorer (home-restart is the check's).
  // A tree's: its root's only, so that the other members show the all or none.
  auto faultText = fault.step.startsWith("home-") && fault.step != "home-restart" && (!gated || home->treeRoot == jobId)
                       ? kj::str("hop:", fault.step, ":", fault.action == HopFaultAction::CRASH ? "crash" : "error")
                       : kj::str("");
  auto become = d.deputyOf(*home).then([&d, image = kj::str(hop->path), log = kj::str(hop->logPath),
                                        faultText = kj::mv(faultText), comeBack,
                                        gate = kj::mv(gate)](rpc::Deputy::Client deputy) {
    auto req = deputy.becomeJobRequest();
    req.setImage(image);
    req.setLog(log);
    req.setMigctl(d.config().migctl);
    req.setFault(faultText);
    req.setComeBack(comeBack);
    req.setGate(gate);
    return req.send().ignoreResult();
  });
  auto limit = d.io().provider->getTimer().afterDelay(kRestoreTimeoutMs * kj::MILLISECONDS).then([]() {
    fail(kj::str("the deputy did not take the job back within 120 s"));
  });
  // (Its record gone, the deputy ended: then the other branch says why.)
  auto cameBack = back.promise.then(
      [&d, jobId, hop = hop.get()]() -> kj::Promise<kj::String> {
        auto why = lastLine(readText(hop->logPath));
        if (why.size() == 0) why = kj::str("the restart failed");
        d.log(kj::str("job ", jobId, ": its restore at home failed (", why,
                      "); its deputy is back, the job goes on where it was"));
        unlink(hop->path.cStr());
        unlink(hop->logPath.cStr());
        return kj::str("the restore at home failed (", why, ")");
      },
      [](kj::Exception&&) -> kj::Promise<kj::String> { return kj::NEVER_DONE; });
  // The deputy never answers: it execs the restart, which ends its connection.
  return become
      .exclusiveJoin(kj::mv(limit))
      .then([]() { fail(kj::str("the deputy answered instead of becoming the job")); },
            [](kj::Exception&& e) {
              if (e.getType() != kj::Exception::Type::DISCONNECTED) kj::throwFatalException(kj::mv(e));
              hopFaultPoint("recv-become", [](kj::String why) { fail(kj::mv(why)); });
            })
      .then([&d, pid, comeBack]() { return untilJobRuns(d, pid, comeBack, kRestoreTimeoutMs); })
      .then([]() { return kj::str(""); })
      .exclusiveJoin(kj::mv(cameBack))
      .catch_([gated, hop = tree.hop](kj::Exception&& e) -> kj::String {
        if (gated) callOffHomeGate(hop, e.getDescription());  // the others must not run without it
        kj::throwFatalException(kj::mv(e));
      })
      .then([&d, jobId, pid, started, hop = kj::mv(hop), gated, treeHop = tree.hop](kj::String failed) mutable {
        if (failed.size() > 0) {
          if (gated) callOffHomeGate(treeHop, kj::str("its process ", pid, ": ", failed));
          return kj::tuple(pid, (nowSeconds() - started) * 1000, kj::mv(failed));
        }
        KJ_IF_MAYBE(j, d.homeJobs().find(jobId)) { (*j)->cameBack = nullptr; }
        // A plain local job from now on: no deputy, no record; `migctl list` finds it
        // as any job at home. Signals that came while it moved go to it now, in order.
        KJ_IF_MAYBE(j, d.homeJobs().find(jobId)) {
          for (auto& s : (*j)->signalsDuringMigration) {
            siginfo_t si;
            if (s.info.size() == sizeof si) memcpy(&si, s.info.begin(), sizeof si);
            if (s.info.size() == sizeof si && si.si_signo == s.signal && si.si_code < 0 && si.si_code != SI_TKILL) {
              syscall(SYS_rt_sigqueueinfo, pid, s.signal, &si);
            } else {
              kill(pid, s.signal);
            }
          }
          d.homeJobs().erase(jobId);
        }
        // Its memory is mapped from the image: deleted when the process ends.
        int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
        if (pidfd >= 0) {
          watchProcessEnd(d, pid, kj::AutoCloseFd(pidfd), [image = kj::str(hop->path), log = kj::str(hop->logPath)]() {
            unlink(image.cStr());
            unlink(log.cStr());
            return kj::Promise<void>(kj::READY_NOW);
          });
        }
        d.log(kj::str("job ", jobId, " runs at home again as PID ", pid, ", local: no deputy, nothing forwarded"));
        return kj::tuple(pid, (nowSeconds() - started) * 1000, kj::str(""));
      });
}

// The hop's own processes here (its link process, the job's restart) must not take a
// PID its children born away keep (issue 12): this host's next PIDs come after
// `highest` (/proc/sys/kernel/ns_last_pid, as root; PIDs wrap only at pid_max). A
// host whose PIDs are far past them already (most) changes nothing; without the
// right, a PID taken meanwhile fails the restore (the hop aborted, the job runs on).
void keepPidsFree(int32_t highest) {
  if (highest <= 0) return;
  kj::AutoCloseFd fd(open("/proc/sys/kernel/ns_last_pid", O_RDWR | O_CLOEXEC));
  char text[32] = {};
  if (fd == nullptr || read(fd, text, sizeof(text) - 1) <= 0 || atol(text) >= highest) return;
  auto line = kj::str(highest);
  (void)!pwrite(fd, line.begin(), line.size(), 0);
}

class NodeImpl final : public rpc::Node::Server {
 public:
  NodeImpl(Daemon& d, kj::Maybe<kj::Function<void()>> watchLiveness) : d_(d), watchLiveness_(kj::mv(watchLiveness)) {}

  // The login ended (closed, reset, or found dead by its liveness watch): the relayed
  // jobs whose link it was start their limit.
  ~NodeImpl() noexcept(false) {
    for (auto& r : relayedJobs_) relayedLinkDown(d_, r.id, r.login, "its login broke");
  }

  kj::Promise<void> info(InfoContext context) override {
    fillInfo(d_, context.getResults().initInfo());
    return kj::READY_NOW;
  }

  kj::Promise<void> receive(ReceiveContext context) override {
    auto t = context.getParams().getTicket();
    require(t.getToken().size() == 32, "a job ticket needs a 32-byte token");
    require(d_.hostedJobs().find(t.getJobId()) == nullptr, kj::str("job ", t.getJobId(), " already runs here"));
    KJ_IF_MAYBE(why, admissionRefusal(d_)) { fail(kj::mv(*why)); }
    // The job's System V objects are made here with their keys and ids: one taken here
    // refuses the job now, before its sender freezes it (resources/sysv_names.h).
    for (auto o : t.getSysv()) {
      KJ_IF_MAYBE(why, resources::sysvNameTaken(o.getKind(), o.getKey(), o.getId())) {
        fail(kj::str(*why, " (", d_.address(), "); remove that object (ipcrm) or end the program that made it, "
                     "and try again"));
      }
    }
    // Children born away come with their PIDs of the sending host (issue 12, the
    // job's restart forks them with clone3 set_tid): one taken here refuses the job now,
    // also at its home (step 3: no deputy or stand-in holds such a PID, the child never
    // had a process here; one of the home's own processes may).
    int32_t highest = 0;
    for (int32_t pid : t.getAwayPids()) {
      if (pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH)) {
        fail(kj::str("cannot take PID ", t.getVpid(), " here (", d_.address(), "): its child born away from home has PID ",
                     pid, ", which a process here has; its children keep their PIDs, so move it to another host or "
                     "once that child has ended"));
      }
      highest = std::max(highest, pid);
    }
    keepPidsFree(highest);
    hopFaultPoint("recv-ticket", [](kj::String why) { fail(kj::mv(why)); });
    mkdir(d_.config().spoolDir.cStr(), 0700);
    auto job = kj::heap<HostedJob>();
    job->id = t.getJobId();
    job->token = kj::heapArray<kj::byte>(t.getToken());
    job->home = kj::str(t.getHome());
    job->network = t.getNetwork();
    job->vpid = t.getVpid();
    job->command = kj::str(t.getCommand());
    job->startedAt = nowSeconds();
    job->calls = kj::refcounted<JobCalls>(d_, job->id, job->home, job->token);
    uint64_t id = job->id;
    d_.hostedJobs().insert(id, kj::mv(job));
    d_.log(kj::str("receiving job ", id, " (PID ", t.getVpid(), " of ", t.getHome(), ": ", t.getCommand(), ")"));
    // The job's realtime clock will follow home's: measured during the transfer, off
    // the job's freeze time (and the link to home is then up for its calls). A home
    // that cannot tell its time still gets its job, on this host's clock.
    auto homeClock = measureHomeClockOffset(d_, t.getHome())
                         .catch_([&d = d_, id](kj::Exception&& e) {
                           d.log(kj::str("job ", id, ": cannot measure home's clock (", e.getDescription(),
                                          "): its realtime clock is this host's"));
                           return int64_t{0};
                         })
                         .eagerlyEvaluate(nullptr);
    // Coming home: the job's deputy is here, so the job will be restored into it
    // (deputy/homecoming.h) and runs local again. A tree's member too when its whole
    // tree comes home in this hop (tree_homecoming.h; the sender checks all or none);
    // one moved alone (--only), or a tree whose members share objects (keepDeputy),
    // comes home as moved jobs, deputies kept.
    bool homecoming = false;
    KJ_IF_MAYBE(h, d_.homeJobs().find(id)) {
      auto& home = **h;
      if (!t.getKeepDeputy() && home.token.size() == t.getToken().size() &&
          memcmp(home.token.begin(), t.getToken().begin(), home.token.size()) == 0) {
        kj::Vector<TreeRecordFacts> records;
        for (auto& e : d_.homeJobs()) {
          auto& r = *e.value;
          if (r.id != id && (home.treeRoot == 0 || (r.id != home.treeRoot && r.treeRoot != home.treeRoot))) continue;
          records.add(TreeRecordFacts{r.id, r.treeRoot, r.migrating, r.ended, r.location.size() > 0});
        }
        homecoming = memberComesHomeLocal(records.asPtr(), id);
      }
    }
    if (homecoming) d_.log(kj::str("job ", id, " is coming home"));
    context.getResults().setSink(kj::heap<ImageSinkImpl>(d_, id, kj::mv(homeClock), homecoming, t.getKeptFrozen()));
    context.getResults().setHome(homecoming);
    return kj::READY_NOW;
  }

  kj::Promise<void> sendJob(SendJobContext context) override {
    auto p = context.getParams();
    HostedJob* job = d_.hostedJob(p.getJobId(), p.getToken());
    require(job != nullptr, "no such job runs here (or a wrong job token)");
    require(job->running, "the job is not running here yet");
    require(!job->leaving, "the job is already migrating");
    job->leaving = true;
    auto result = context.getResults().initResult();
    auto to = d_.resolveNode(p.getTo());
    result.setDestination(to);
    uint64_t id = job->id;
    return d_.runSender(result, job->realPid, job->id, job->token, job->home, job->vpid, job->command, to, p.getNetwork(), false, p.getMode(),
                        p.getOnly())
        .then([this, id]() { return d_.hostedJobGone(id); })
        .catch_([this, id](kj::Exception&& e) -> kj::Promise<void> {
          KJ_IF_MAYBE(j, d_.hostedJobs().find(id)) { (*j)->leaving = false; }
          return kj::mv(e);
        });
  }

  // A tree that moved here together moves on together: one `migctl send` for all its
  // members (send_command.cc sendTree), the first the root.
  kj::Promise<void> sendTree(SendTreeContext context) override {
    auto p = context.getParams();
    auto keys = p.getJobs();
    require(keys.size() > 0, "no jobs to send");
    kj::Vector<HostedJob*> jobs;
    for (auto k : keys) {
      HostedJob* job = d_.hostedJob(k.getJobId(), k.getToken());
      require(job != nullptr, kj::str("job ", k.getJobId(), " of the tree does not run here (or a wrong job token)"));
      require(job->running, kj::str("job ", k.getJobId(), " (PID ", job->vpid, ") is not running here yet"));
      require(!job->leaving, kj::str("job ", k.getJobId(), " (PID ", job->vpid, ") is already migrating"));
      jobs.add(job);
    }
    kj::Vector<kj::String> members;
    for (size_t i = 1; i < jobs.size(); ++i) {
      members.add(kj::str(jobs[i]->realPid, ":", jobs[i]->id, ":", hex(jobs[i]->token), ":", jobs[i]->vpid));
    }
    auto ids = kj::heapArray<uint64_t>(jobs.size());
    for (size_t i = 0; i < jobs.size(); ++i) {
      jobs[i]->leaving = true;
      ids[i] = jobs[i]->id;
    }
    HostedJob& root = *jobs[0];
    auto result = context.getResults().initResult();
    auto to = d_.resolveNode(p.getTo());
    result.setDestination(to);
    auto text = kj::str(kj::strArray(members, " "));
    return d_.runSender(result, root.realPid, root.id, root.token, root.home, root.vpid, root.command, to, p.getNetwork(),
                        false, p.getMode(), false, text)
        .then([this, ids = kj::heapArray<uint64_t>(ids.asPtr())]() {
          kj::Vector<kj::Promise<void>> gone;
          for (uint64_t id : ids) gone.add(d_.hostedJobGone(id));
          return kj::joinPromises(gone.releaseAsArray());
        })
        .catch_([this, ids = kj::mv(ids)](kj::Exception&& e) -> kj::Promise<void> {
          for (uint64_t id : ids) {
            KJ_IF_MAYBE(j, d_.hostedJobs().find(id)) { (*j)->leaving = false; }
          }
          return kj::mv(e);
        });
  }

  // A drain on the host a job runs on moves its tree whole (shadow/drain.cc): which
  // jobs moved with it, as home knows them (HomeJob::treeRoot), root first.
  kj::Promise<void> treeOf(TreeOfContext context) override {
    auto p = context.getParams();
    HomeJob& job = d_.homeJob(p.getJobId(), p.getToken());
    kj::Vector<HomeJob*> tree;
    if (job.treeRoot != 0) {
      KJ_IF_MAYBE(r, d_.homeJobs().find(job.treeRoot)) {
        if (!(*r)->ended) tree.add(r->get());
      }
      for (auto& e : d_.homeJobs()) {
        HomeJob& m = *e.value;
        if (m.treeRoot == job.treeRoot && m.id != job.treeRoot && !m.ended) tree.add(&m);
      }
    }
    if (tree.size() < 2) return kj::READY_NOW;
    auto jobs = context.getResults().initJobs(static_cast<unsigned>(tree.size()));
    auto hosts = context.getResults().initHosts(static_cast<unsigned>(tree.size()));
    auto pids = context.getResults().initPids(static_cast<unsigned>(tree.size()));
    for (size_t i = 0; i < tree.size(); ++i) {
      jobs[static_cast<unsigned>(i)].setJobId(tree[i]->id);
      jobs[static_cast<unsigned>(i)].setToken(tree[i]->token);
      hosts.set(static_cast<unsigned>(i), tree[i]->location.size() > 0 ? tree[i]->location.asPtr() : d_.address());
      pids.set(static_cast<unsigned>(i), tree[i]->vpid);
    }
    return kj::READY_NOW;
  }

  // The host that kept the job for a hop home whose commit got no answer asks whether
  // home took it. Its record with a registered deputy: the deputy serves it away
  // (resume; also a deputy that came back from a failed restart). No record (this
  // shadowd started after the commit, or the hop home finished and forgot it): its
  // process here says, which is still the deputy, its restart or the restorer while
  // undecided, and else the job (it runs here, or ran and ended): end.
  kj::Promise<void> homecomingOutcome(HomecomingOutcomeContext context) override {
    auto p = context.getParams();
    auto outcome = rpc::HomecomingOutcome::UNDECIDED;
    KJ_IF_MAYBE(j, d_.homeJobs().find(p.getJobId())) {
      HomeJob& job = **j;
      require(sameBytes(job.token, p.getToken()), kj::str(kUnknownJob));
      if (job.lost) outcome = rpc::HomecomingOutcome::END;  // the deputy ended it (link lost)
      else if (job.deputy != nullptr && job.cameBack == nullptr && !job.ended) outcome = rpc::HomecomingOutcome::RESUME;
    } else {
      const pid_t pid = p.getVpid();
      auto arg = firstArg(pid);
      kj::StringPtr base = arg;
      KJ_IF_MAYBE(slash, arg.findLast('/')) { base = arg.slice(*slash + 1); }
      const bool mig = arg == d_.config().deputy || arg == d_.config().migctl || base == "mig-deputy" ||
                       base == "migctl" || base == "mig-restore" || holdsComeBack(pid);
      // (An empty command line while it runs: an exec under way.)
      if (pid <= 0 || !resources::processRuns(pid) || (arg.size() > 0 && !mig)) outcome = rpc::HomecomingOutcome::END;
    }
    context.getResults().setOutcome(outcome);
    return kj::READY_NOW;
  }

  kj::Promise<void> deputy(DeputyContext context) override {
    auto p = context.getParams();
    HomeJob& job = d_.homeJob(p.getJobId(), p.getToken());
    require(!job.lost, kj::str("job ", job.id, " is lost here: its link home stayed broken past its limit"));
    // A new host, or the job's link made again: a limit running for it is void. (Its
    // host's shadowd, restarted, asking again is neither.)
    if (p.getRelayed() || job.location != p.getLocation()) job.relayLost = nullptr;
    job.location = kj::str(p.getLocation());
    if (p.getRelayed()) {
      // This login is the job's link home now: its end starts the limit (relayed_link.cc).
      job.relayedFrom = kj::str(job.location);
      relayedJobs_.add(RelayedJob{job.id, ++job.relayLogin});
      KJ_IF_MAYBE(watch, watchLiveness_) { (*watch)(); }
    }
    keepRecordAtDeputy(d_, job);
    // The limit once the deputy has registered: it tells the job's own.
    return d_.deputyOf(job).then([this, context, id = job.id](rpc::Deputy::Client deputy) mutable {
      context.getResults().setDeputy(kj::mv(deputy));
      context.getResults().setStops(jobStops(d_, id, context.getParams().getLocation()));
      KJ_IF_MAYBE(j, d_.homeJobs().find(id)) { context.getResults().setLostAfterMs(relayLimitMs(d_, **j)); }
    });
  }

  // A ticket for the job's direct link (shadow/direct_link.h).
  kj::Promise<void> directLink(DirectLinkContext context) override {
    auto p = context.getParams();
    HomeJob& job = d_.homeJob(p.getJobId(), p.getToken());
    auto key = directLinkKey(d_.key(), job.id, randomBytes(16));
    // The deputy listens where this shadowd is reached (a wildcard: every address).
    auto host = hostOf(d_.address());
    return d_.deputyOf(job).then([this, context, key = kj::mv(key), host = kj::mv(host)](rpc::Deputy::Client deputy) mutable {
      auto req = deputy.openDirectLinkRequest();
      req.setKey(key);
      req.setHost(host);
      req.setPlaintext(d_.config().linkMode == LinkMode::PLAINTEXT);
      // Both ends give a broken link up after the same time: home's.
      req.setLostAfterMs(d_.config().linkLostAfterMs);
      return req.send().then([this, context, key = kj::mv(key), host = kj::mv(host)](auto r) mutable {
        context.getResults().setAddress(kj::str(host, ":", r.getPort()));
        context.getResults().setKey(key);
        // The deputy's figure: the job may have asked for its own (MIG_LINK_LOST_AFTER).
        context.getResults().setLostAfterMs(r.getLostAfterMs() > 0 ? r.getLostAfterMs() : d_.config().linkLostAfterMs);
      });
    });
  }

  kj::Promise<void> signal(SignalContext context) override {
    auto p = context.getParams();
    const int sig = p.getSignal();
    require(sig > 0 && sig < 65, "bad signal number");
    HostedJob* job = d_.hostedJob(p.getJobId(), p.getToken());
    // A signal to the job's group at home: to its group here, which it leads (its
    // restart's setsid), its children born here in it.
    pid_t group = p.getToGroup() && job != nullptr ? job->realPid : 0;
    KJ_IF_MAYBE(ended, d_.endedGroups().find(p.getJobId())) {
      if (p.getToGroup() && group == 0 && sameBytes(ended->token, p.getToken())) group = ended->group;
    }
    if (group > 0) {
      if (sig != SIGTSTP && sig != SIGTTIN && sig != SIGTTOU) {
        // All at once, as the kernel gives a group signal: a child forked in a handler
        // of it does not get it too. None left in the group (ESRCH): nobody to tell.
        if (kill(-group, sig) != 0 && errno != ESRCH) KJ_FAIL_SYSCALL("kill", errno, group, sig);
        return kj::READY_NOW;
      }
      // Each as the job's own (SIGSTOP where it would stop: the group here is orphaned).
      for (pid_t pid : groupMembersHere(group)) {
        // One that ended meanwhile needs it no more: the others get theirs.
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { deliverSignal(pid, sig, p.getInfo()); })) { (void)e; }
      }
      return kj::READY_NOW;
    }
    require(job != nullptr && job->realPid > 0, "no such job runs here (or a wrong job token)");
    deliverSignal(job->realPid, sig, p.getInfo());
    return kj::READY_NOW;
  }

  kj::Promise<void> clock(ClockContext context) override {
    context.getResults().setRealtimeNs(clockForPeers());
    return kj::READY_NOW;
  }

  kj::Promise<void> setupCheck(SetupCheckContext context) override {
    auto p = context.getParams();
    HostedJob* job = d_.hostedJob(p.getJobId(), p.getToken());
    require(job != nullptr, "no such job runs here");
    // Bounded: a deputy that never answers is a problem of its own.
    auto limit = d_.io().provider->getTimer().afterDelay(kSetupCheckMs * kj::MILLISECONDS).then([]() {
      return kj::str("its home fds were not all watched within ", kSetupCheckMs / 1000,
                     " s: poll and epoll on them may not wake");
    });
    auto problems = job->link ? job->link->setupProblems() : job->calls->setupProblems().attach(kj::addRef(*job->calls));
    return problems.exclusiveJoin(kj::mv(limit))
        .then([context](kj::String problem) mutable { context.getResults().setProblem(problem); });
  }

  kj::Promise<void> drain(DrainContext context) override {
    auto p = context.getParams();
    return drainHere(d_, p.getDrained(), p.getAll(), p.getTimeLimitMs()).then([context](kj::Array<MoveOutcome> moves) mutable {
      fillMoves(context.getResults().initMoves(static_cast<unsigned>(moves.size())), moves);
    });
  }

  kj::Promise<void> claimSlot(ClaimSlotContext context) override { return nodeClaimSlot(d_, context); }

  kj::Promise<void> resumePages(ResumePagesContext context) override {
    auto p = context.getParams();
    context.getResults().setFinished(resumePostcopy(p.getJobId(), p.getToken(), p.getSource()));
    return kj::READY_NOW;
  }

  kj::Promise<void> commitHop(CommitHopContext context) override {
    auto p = context.getParams();
    HostedJob* job = d_.hostedJob(p.getJobId(), p.getToken());
    require(job != nullptr, "no such job is arriving here (or a wrong job token)");
    d_.log(kj::str("job ", p.getJobId(), ": commit asked by its sender's shadowd (the sender lost the answer)"));
    // Idempotent: a job released already answers once it runs.
    if (job->running) {
      context.getResults().setRealPid(job->realPid);
      return kj::READY_NOW;
    }
    KJ_IF_MAYBE(r, PreparedHop::releasing().find(p.getJobId())) {
      pid_t pid = job->realPid;
      return r->addBranch().then([context, pid]() mutable { context.getResults().setRealPid(pid); });
    }
    return PreparedHop::commit(d_, p.getJobId(), PreparedHop::TreeHop{})
        .then([context](kj::Tuple<pid_t, double, kj::String> r) mutable {
          context.getResults().setRealPid(kj::get<0>(r));
          context.getResults().setRestoreMs(kj::get<1>(r));
        });
  }

  kj::Promise<void> jobEnded(JobEndedContext context) override {
    auto p = context.getParams();
    // Not known here: this shadowd restarted and has not learned the job back from its
    // deputy yet (or the job was ended from here). Said, so that the sender tells the
    // deputy over the direct link instead of taking this for delivered.
    if (d_.homeJobs().find(p.getJobId()) == nullptr) {
      fail(kj::str("job ", p.getJobId(), " is not known at its home (yet)"));
    }
    HomeJob& job = d_.homeJob(p.getJobId(), p.getToken());
    // Lost (its link stayed broken past the limit), or ended from here (a post-copy hop's
    // pages lost, endPostcopyLost): its deputy has ended already.
    if (job.lost || job.ended) return kj::READY_NOW;
    int status = p.getStatus();
    uint64_t id = job.id;
    job.ended = true;
    d_.log(kj::str("job ", id, " (PID ", job.vpid, ") ended: ", describeStatus(status)));
    return d_.deputyOf(job).then([this, id, status](rpc::Deputy::Client deputy) {
      auto req = deputy.endedRequest();
      req.setStatus(status);
      // The deputy exits while answering: a broken connection is success here.
      return req.send().ignoreResult().catch_([](kj::Exception&&) {}).then([this, id]() { d_.homeJobs().erase(id); });
    });
  }

 private:
  Daemon& d_;
  kj::Maybe<kj::Function<void()>> watchLiveness_;
  struct RelayedJob {
    uint64_t id;
    uint64_t login;  // HomeJob::relayLogin when it came on this login
  };
  kj::Vector<RelayedJob> relayedJobs_;
};

}  // namespace

rpc::Node::Client makeNode(Daemon& d, kj::Maybe<kj::Function<void()>> watchLiveness) {
  return kj::heap<NodeImpl>(d, kj::mv(watchLiveness));
}

void watchGuest(Daemon& d, uint64_t jobId, kj::Promise<int> exited, kj::String image) {
  ImageSinkImpl::watchJob(d, jobId, kj::mv(exited), kj::mv(image));
}

}  // namespace mig::shadow
