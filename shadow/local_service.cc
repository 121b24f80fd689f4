// Local: shadowd's owner-only Unix socket, for migctl (list, nodes, migrate) and for
// the deputies of jobs whose home is here (register, forward a signal).
#include "resources/proc_owner.h"
#include "resources/process_tree.h"
#include "shadow/hex.h"
#include "shadow/child_process.h"
#include "shadow/balance.h"
#include "shadow/drain.h"
#include "shadow/error.h"
#include "shadow/process_end.h"
#include "shadow/services.h"
#include "shadow/spool.h"
#include "shadow/stop_watch.h"

#include "shim/control_protocol.h"

#include <kj/debug.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

constexpr uint64_t kNodeInfoTimeoutMs = 3000;

// How often shadowd looks whether a deputy was stopped by SIGSTOP (which it cannot
// catch, and nothing but its parent hears of) when it cannot trace the deputy's
// stop-watch thread (stop_watch.h).
constexpr uint64_t kStopPollMs = 100;

kj::String readProc(pid_t pid, const char* what) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/%s", pid, what);
  FILE* f = fopen(path, "re");
  if (f == nullptr) return kj::str("");
  char buf[4096];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  return kj::heapString(buf, n);
}

// Whether process `pid` is stopped (state T in /proc/PID/stat; not t, a tracer's stop).
bool processStopped(pid_t pid) {
  auto stat = readProc(pid, "stat");
  const char* paren = strrchr(stat.cStr(), ')');
  return paren != nullptr && paren[1] == ' ' && paren[2] == 'T';
}

// The group stand-in the deputy of `job` names (deputy/stand_in.h), kept as a pidfd once
// it is surely that: in the deputy's session, named so.
void keepStandIn(Daemon& d, HomeJob& job, pid_t pid) {
  if (pid <= 0) return;
  kj::AutoCloseFd fd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (fd.get() < 0 || getsid(pid) != getsid(job.vpid) || readProc(pid, "comm") != "mig-standin\n") {
    d.log(kj::str("job ", job.id, ": its deputy's group stand-in, PID ", pid, ", is not one; not watched"));
    return;
  }
  job.standIn = kj::mv(fd);
  job.standInPid = pid;
}

// Whether the job's stand-in has signal `sig` pending (sent, not yet taken).
bool standInPending(const HomeJob& job, int sig) {
  const unsigned long long bit = 1ull << (sig - 1);
  auto status = readProc(job.standInPid, "status");
  for (const char* field : {"SigPnd:", "ShdPnd:"}) {
    const char* at = strstr(status.cStr(), field);
    if (at != nullptr && (strtoull(at + strlen(field), nullptr, 16) & bit)) return true;
  }
  return false;
}

// Whether the SIGSTOP that stopped the job's deputy was sent to its group at home: the
// stand-in, in that group, has it too (stand_in.h). The kernel gives a group signal to
// every process in the group before kill(2) returns, long before the deputy's stop is
// seen here, so the stand-in has it pending or, having taken it, is stopped: looked at
// in that order (the kernel takes it and stops the process at once, under the lock
// that the look at what is pending takes).
bool standInStopped(const HomeJob& job) {
  if (job.standIn.get() < 0) return false;
  struct pollfd gone = {job.standIn.get(), POLLIN, 0};
  if (poll(&gone, 1, 0) == 1) return false;
  return standInPending(job, SIGSTOP) || processStopped(job.standInPid);
}

// Whether the job's stand-in was killed with its deputy, which is gone: a SIGKILL of
// their group at home (stand_in.h). The kernel gives a group's SIGKILL to every process
// in it before kill(2) returns, so by the deputy's end the stand-in has it pending, is
// exiting (PF_EXITING), or has ended: one whose deputy died alone waits 5 s first.
bool standInKilled(const HomeJob& job) {
  if (job.standIn.get() < 0) return false;
  struct pollfd gone = {job.standIn.get(), POLLIN, 0};
  if (poll(&gone, 1, 0) == 1) return true;
  if (standInPending(job, SIGKILL)) return true;
  auto stat = readProc(job.standInPid, "stat");
  const char* field = strrchr(stat.cStr(), ')');  // then state ppid pgrp session tty tpgid flags
  for (int i = 0; field != nullptr && i < 7; ++i) field = strchr(field + 1, ' ');
  constexpr unsigned long kExiting = 0x4;  // PF_EXITING
  return field != nullptr && (strtoul(field + 1, nullptr, 10) & kExiting);
}

// A deputy found stopped that did not stop itself for a forwarded TSTP (TTIN, TTOU), so
// stopped by SIGSTOP, has the job stopped too with SIGSTOP: the job alone, or, when the
// SIGSTOP was the group's (its stand-in has it too), the job's group where it runs, its
// children born there with it (Node.signal `toGroup`). SIGCONT needs nothing here: the
// deputy catches it and passes it on, to the group there when the stand-in caught it too
// (deputySignal then forgets the stop, so the next one is seen however soon it comes).
// While the job moves, its stop is seen once it has arrived (followStops after the hop).
void deputyFound(Daemon& d, HomeJob& job, bool stopped, const char* how) {
  if (stopped && !job.deputyStopped && !job.stopForwarded) {
    const bool group = standInStopped(job);
    d.log(kj::str("job ", job.id, ": its deputy (PID ", job.vpid, ") was stopped; stopping the job", group ? "'s group" : "",
                  " (", how, group ? "; its group stand-in was stopped too" : "", ")"));
    d.tasks().add(sendSignal(d, job, SIGSTOP, nullptr, group));
  }
  job.deputyStopped = stopped;
}

// Sends the deputy `sig` marked as following the job (kFollowedStopValue): SIGSTOP stops
// it, a TSTP, TTIN or TTOU it stops itself with, a SIGCONT continues it; none is passed
// on to the job, which has it already.
void followOnDeputy(Daemon& d, HomeJob& job, int sig) {
  siginfo_t info{};
  info.si_signo = sig;
  info.si_code = SI_QUEUE;
  info.si_pid = getpid();
  info.si_uid = getuid();
  info.si_value.sival_int = kFollowedStopValue;
  if (syscall(SYS_rt_sigqueueinfo, job.vpid, sig, &info) != 0) {
    d.log(kj::str("job ", job.id, ": its deputy (PID ", job.vpid, ") could not be sent signal ", sig, ": ", strerror(errno)));
  }
}

class JobStopsImpl final : public rpc::JobStops::Server {
 public:
  JobStopsImpl(Daemon& d, uint64_t jobId, kj::StringPtr location) : d_(d), jobId_(jobId), location_(kj::str(location)) {}

  kj::Promise<void> stopped(StoppedContext context) override {
    const int sig = context.getParams().getSignal();
    KJ_IF_MAYBE(job, following()) {
      // A stop that came from home (a forwarded TSTP, shadowd's SIGSTOP) has the deputy
      // stopped already, by the signal its parent must see.
      if (job->stopForwarded || job->deputyStopped || !(sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)) {
        return kj::READY_NOW;
      }
      d_.log(kj::str("job ", jobId_, ": stopped where it runs (signal ", sig, "); stopping its deputy alike"));
      job->stopForwarded = true;  // the deputy's stop is the job's: not sent back to it
      followOnDeputy(d_, *job, sig);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> continued(ContinuedContext) override {
    KJ_IF_MAYBE(job, following()) {
      if (job->stopForwarded || job->deputyStopped) {
        d_.log(kj::str("job ", jobId_, ": continued where it runs; continuing its deputy alike"));
      }
      job->stopForwarded = false;
      job->deputyStopped = false;
      followOnDeputy(d_, *job, SIGCONT);
    }
    return kj::READY_NOW;
  }

 private:
  // The job, while it runs on the host that tells (a hop's own SIGSTOP of the job
  // there, post-copy's or a hop home's, is not the job's stop: a hop home's holds it
  // stopped there from its commit, while this host receives it, `hostedJobs`, until
  // its deputy has become it, `cameBack`).
  kj::Maybe<HomeJob&> following() {
    if (d_.hostedJobs().find(jobId_) != nullptr) return nullptr;
    KJ_IF_MAYBE(j, d_.homeJobs().find(jobId_)) {
      HomeJob& job = **j;
      if (!job.ended && !job.migrating && job.cameBack == nullptr && job.location == location_) return job;
    }
    return nullptr;
  }

  Daemon& d_;
  uint64_t jobId_;
  kj::String location_;
};

// Without a stop watch: every kStopPollMs, while the job's record lives.
kj::Promise<void> pollStops(Daemon& d, uint64_t jobId) {
  return d.io().provider->getTimer().afterDelay(kStopPollMs * kj::MILLISECONDS).then([&d, jobId]() -> kj::Promise<void> {
    KJ_IF_MAYBE(j, d.homeJobs().find(jobId)) {
      HomeJob& job = **j;
      if (job.ended) return kj::READY_NOW;
      // While it moves, seen again once it has arrived.
      if (job.migrating || job.location.size() == 0) return pollStops(d, jobId);
      deputyFound(d, job, processStopped(job.vpid), "found by a look at its state");
      return pollStops(d, jobId);
    }
    return kj::READY_NOW;
  });
}

// The stop watch's reports, until the helper ends (the deputy ended or became the job).
// Its first word: it traces the deputy's thread ('A'), or not ('F', errno: then its
// state is looked at instead). While the job moves the reports wait: followStops looks
// once the hop is over.
kj::Promise<void> readStops(Daemon& d, uint64_t jobId, kj::Own<kj::AsyncInputStream> reports, bool first) {
  auto buf = kj::heapArray<kj::byte>(64);
  auto got = reports->tryRead(buf.begin(), 1, buf.size());  // 'F' and its errno come in one write
  return got.then([&d, jobId, reports = kj::mv(reports), buf = kj::mv(buf), first](size_t n) mutable -> kj::Promise<void> {
    KJ_IF_MAYBE(j, d.homeJobs().find(jobId)) {
      HomeJob& job = **j;
      if (job.ended) return kj::READY_NOW;
      size_t from = 0;
      if (first) {
        if (n == 0 || buf[0] != 'A') {
          // Another helper of ours got there first (followStops at the deputy's
          // registration and again at the hop's end): that one reports.
          if (stopWatchRunning(job.vpid)) return kj::READY_NOW;
          auto why = n >= 2 && buf[0] == 'F' ? stopWatchRefused(job.vpid, buf[1]) : kj::str("its helper ended at once");
          d.log(kj::str("job ", jobId, ": no stop watch (", why, "); looking at its deputy's state every ", kStopPollMs,
                        " ms"));
          return pollStops(d, jobId);
        }
        d.log(kj::str("job ", jobId, ": its deputy's stops are watched"));
        from = 1;
      }
      if (n == 0) return kj::READY_NOW;
      if (n > from && !job.migrating && job.location.size() > 0) {
        deputyFound(d, job, buf[n - 1] == 'S', "seen by its stop watch");  // the latest word is the state now
      }
      return readStops(d, jobId, kj::mv(reports), false);
    }
    return kj::READY_NOW;
  });
}

// Follows the stops of the job's deputy from now on: told by its stop watch
// (stop_watch.h), started once per deputy process, or else by looking at its state.
// Called when the deputy registers (it starts its stop-watch thread before) and after
// each hop: a stop that came while the job moved is acted on now.
kj::Promise<void> followStops(Daemon& d, uint64_t jobId) {
  KJ_IF_MAYBE(j, d.homeJobs().find(jobId)) {
    HomeJob& job = **j;
    if (job.deputy == nullptr) return kj::READY_NOW;  // the hop is over before its deputy registered
    if (stopWatchRunning(job.vpid)) {
      if (!job.migrating && job.location.size() > 0) {
        deputyFound(d, job, processStopped(job.vpid), "seen by its stop watch after the hop");
      }
      return kj::READY_NOW;
    }
    kj::String why;
    KJ_IF_MAYBE(watch, startStopWatch(*d.io().lowLevelProvider, job.vpid, why)) {
      d.tasks().add(childExit(d.eventPort(), watch->helper).ignoreResult());
      // Already stopped before the watch began: the helper reports that next.
      return readStops(d, jobId, kj::mv(watch->reports), true);
    }
    d.log(kj::str("job ", jobId, ": no stop watch (", why, "); looking at its deputy's state every ", kStopPollMs, " ms"));
    return pollStops(d, jobId);
  }
  return kj::READY_NOW;
}

kj::String commandOf(pid_t pid) {
  auto raw = readProc(pid, "cmdline");
  auto out = kj::heapString(raw);
  for (auto& c : out) {
    if (c == '\0') c = ' ';
  }
  size_t n = out.size();
  while (n > 0 && out[n - 1] == ' ') --n;
  return kj::heapString(out.slice(0, n));
}

uint64_t rssKiB(pid_t pid) {
  auto status = readProc(pid, "status");
  const char* at = strstr(status.cStr(), "VmRSS:");
  return at ? strtoull(at + 6, nullptr, 10) : 0;
}

double ageSeconds(pid_t pid) {
  auto stat = readProc(pid, "stat");
  const char* close = strrchr(stat.cStr(), ')');
  if (close == nullptr) return 0;
  // Field 22 (starttime, clock ticks since boot); fields counted from 3 after ')'.
  const char* p = close + 2;
  for (int field = 3; field < 22 && *p; ++field) {
    p = strchr(p, ' ');
    if (p == nullptr) return 0;
    ++p;
  }
  double start = strtod(p, nullptr) / static_cast<double>(sysconf(_SC_CLK_TCK));
  double up = 0;
  if (FILE* f = fopen("/proc/uptime", "re")) {
    if (fscanf(f, "%lf", &up) != 1) up = 0;
    fclose(f);
  }
  return up > start ? up - start : 0;
}

// A hop asked of the host the job runs on (Node.sendJob, sendTree): its figures, as
// that host measured them.
void takeFigures(rpc::MigrationResult::Builder to, rpc::MigrationResult::Reader got) {
  to.setFreezeMs(got.getFreezeMs());
  to.setImageBytes(got.getImageBytes());
  to.setTransferMs(got.getTransferMs());
  to.setRestoreMs(got.getRestoreMs());
  to.setMode(got.getMode());
  to.setModeNote(got.getModeNote());
  to.setBytesBeforeFreeze(got.getBytesBeforeFreeze());
  to.setBytesDuringFreeze(got.getBytesDuringFreeze());
  to.setRounds(got.getRounds());
  to.setBytesAfterFreeze(got.getBytesAfterFreeze());
}

// PIDs of this user's processes running under libmig (their shim listens on
// @mig/<uid>/ctl/<pid>): /proc/net/unix lists abstract names with a leading '@'.
kj::Vector<pid_t> shimProcesses() {
  kj::Vector<pid_t> out;
  FILE* f = fopen("/proc/net/unix", "re");
  if (f == nullptr) return out;
  char prefix[64];
  snprintf(prefix, sizeof(prefix), "@mig/%u/ctl/", getuid());
  char line[512];
  while (fgets(line, sizeof(line), f)) {
    const char* at = strstr(line, prefix);
    if (at == nullptr) continue;
    pid_t pid = static_cast<pid_t>(atoi(at + strlen(prefix)));
    if (pid <= 0 || kill(pid, 0) != 0) continue;
    // The name is the process's own choice (from a getuid() it may fake): whose it is
    // is what the kernel says.
    if (resources::realUidOf(pid) != getuid()) continue;
    bool seen = false;
    for (pid_t p : out) seen = seen || p == pid;
    if (!seen) out.add(pid);
  }
  fclose(f);
  return out;
}

// A job given up here whose destination did not confirm that it runs (the hop's
// commit, docs/design.md "One hop"): asked again until it says (it runs there: done;
// it has no such job: lost) or for twice the transfer timeout (lost). A lost job's
// deputy ends as if the job was killed (SIGKILL), so its parent's wait returns: never
// a hang. One that runs there after all, unreachable meanwhile, finds no deputy.
kj::Promise<void> confirmOrLose(Daemon& d, uint64_t id, kj::String to, double deadline) {
  HomeJob* job = nullptr;
  KJ_IF_MAYBE(j, d.homeJobs().find(id)) { job = j->get(); }
  if (job == nullptr || job->ended) return kj::READY_NOW;
  auto ask = d.peer(to).then([id, token = kj::heapArray<kj::byte>(job->token)](rpc::Node::Client node) mutable {
    auto req = node.commitHopRequest();
    req.setJobId(id);
    req.setToken(token);
    return req.send().ignoreResult();
  });
  auto limit = d.io().provider->getTimer().afterDelay(5 * kj::SECONDS).then([]() { fail(kj::str("no answer within 5 s")); });
  return ask.exclusiveJoin(kj::mv(limit))
      .then([&d, id, to = kj::str(to)]() -> kj::Promise<void> {
              d.log(kj::str("job ", id, " runs on ", to, " after all (its commit is confirmed)"));
              return kj::READY_NOW;
            },
            [&d, id, to = kj::mv(to), deadline](kj::Exception&& e) mutable -> kj::Promise<void> {
              bool gone = strstr(e.getDescription().cStr(), "no such job is arriving here") != nullptr;
              if (!gone && nowSeconds() < deadline) {
                return d.io().provider->getTimer().afterDelay(2 * kj::SECONDS).then(
                    [&d, id, to = kj::mv(to), deadline]() mutable { return confirmOrLose(d, id, kj::mv(to), deadline); });
              }
              KJ_IF_MAYBE(j, d.homeJobs().find(id)) {
                HomeJob& lost = **j;
                lost.ended = true;
                d.log(kj::str("job ", id, " (PID ", lost.vpid, ") is lost: given up here, and ", to,
                              gone ? " does not have it" : kj::str(" did not answer: ", e.getDescription()).cStr(),
                              "; its deputy ends as if it was killed (SIGKILL)"));
                return d.deputyOf(lost).then([&d, id](rpc::Deputy::Client deputy) {
                  auto req = deputy.endedRequest();
                  req.setStatus(SIGKILL);  // the wait status of a process killed by SIGKILL
                  return req.send().ignoreResult().catch_([](kj::Exception&&) {}).then([&d, id]() {
                    d.homeJobs().erase(id);
                  });
                });
              }
              return kj::READY_NOW;
            });
}

// A descendant moving with its tree's root: its job record and a pidfd opened while
// it was surely that process (it becomes that job's deputy).
struct TreeMemberRecord {
  uint64_t id;
  kj::AutoCloseFd pidfd;
};

kj::Array<uint64_t> memberIdsOf(const kj::Vector<TreeMemberRecord>& members) {
  auto ids = kj::heapArray<uint64_t>(members.size());
  for (size_t i = 0; i < members.size(); ++i) ids[i] = members[i].id;
  return ids;
}

// A post-copy hop that lost its destination before it had every page (send_command.cc):
// the job is ended there by its page server; its deputy here ends as if it was killed,
// so that its parent's wait returns. A job whose home process never became the deputy
// was killed by its sender: nothing to do.
void endPostcopyLost(Daemon& d, uint64_t id) {
  KJ_IF_MAYBE(j, d.homeJobs().find(id)) {
    HomeJob& lost = **j;
    if (lost.ended || lost.deputy == nullptr) return;
    lost.ended = true;
    d.log(kj::str("job ", id, " (PID ", lost.vpid, ") is lost: its memory could not follow it after a post-copy hop; its "
                  "deputy ends as if it was killed (SIGKILL)"));
    auto req = KJ_ASSERT_NONNULL(lost.deputy).endedRequest();
    req.setStatus(SIGKILL);
    d.tasks().add(req.send().ignoreResult().catch_([](kj::Exception&&) {}).then([&d, id]() { d.homeJobs().erase(id); }));
  }
}

// The parent of process `pid` (/proc/PID/stat), 0 if it is gone.
pid_t parentOf(pid_t pid) {
  resources::TreeProcess p{};
  return resources::parseStat(readProc(pid, "stat").cStr(), p) ? p.ppid : 0;
}

// The program process `pid` runs, without its directory (and " (deleted)": upgraded).
kj::String programOf(pid_t pid) {
  char buf[4096];
  ssize_t n = readlink(kj::str("/proc/", pid, "/exe").cStr(), buf, sizeof(buf) - 1);
  if (n <= 0) return kj::str("");
  buf[n] = '\0';
  kj::StringPtr path = buf;
  if (path.endsWith(" (deleted)")) buf[n - 10] = '\0';
  const char* slash = strrchr(buf, '/');
  return kj::str(slash != nullptr ? slash + 1 : buf);
}

// How long a restarted shadowd waits for home's word on a guest its link process
// announces (Node.deputy): a home that does not answer does not keep the job unlisted.
constexpr uint64_t kRelearnHomeMs = 5000;

class LocalImpl final : public rpc::Local::Server {
 public:
  explicit LocalImpl(Daemon& d) : d_(d) {}
  // A connection on the local socket, from process `pid` of user `uid` (SO_PEERCRED).
  LocalImpl(Daemon& d, pid_t pid, uid_t uid) : d_(d), peerPid_(pid), peerUid_(uid) {}

  kj::Promise<void> list(ListContext context) override {
    kj::Vector<kj::Function<void(rpc::JobStatus::Builder)>> rows;
    kj::Vector<pid_t> listed;
    for (auto& e : d_.homeJobs()) {
      HomeJob& j = *e.value;
      if (!j.lost) listed.add(j.vpid);  // its PID may be another process's by now
      rows.add([&j, this](rpc::JobStatus::Builder b) {
        b.setJobId(j.id);
        b.setVpid(j.vpid);
        b.setHome(d_.address());
        b.setLocation(j.location.size() > 0 ? j.location.asPtr() : d_.address());
        b.setState(j.lost ? "lost" : j.migrating ? "migrating" : j.location.size() > 0 ? "away (deputy here)" : "running");
        b.setAgeSeconds(nowSeconds() - j.startedAt);
        b.setCommand(j.command);
      });
    }
    for (auto& e : d_.hostedJobs()) {
      HostedJob& j = *e.value;
      if (j.realPid > 0) listed.add(j.realPid);
      rows.add([&j, this](rpc::JobStatus::Builder b) {
        b.setJobId(j.id);
        b.setVpid(j.vpid);
        b.setHome(j.home);
        b.setLocation(d_.address());
        b.setState(j.leaving ? "migrating" : j.running ? "running (migrated in)" : "arriving");
        b.setRssKiB(j.realPid > 0 ? rssKiB(j.realPid) : 0);
        b.setAgeSeconds(nowSeconds() - j.startedAt);
        b.setCommand(j.command);
      });
    }
    for (pid_t pid : shimProcesses()) {
      bool seen = false;
      for (pid_t p : listed) seen = seen || p == pid;
      if (seen) continue;
      rows.add([pid, this](rpc::JobStatus::Builder b) {
        b.setVpid(pid);
        b.setHome(d_.address());
        b.setLocation(d_.address());
        b.setState("running");
        b.setRssKiB(rssKiB(pid));
        b.setAgeSeconds(ageSeconds(pid));
        b.setCommand(commandOf(pid));
      });
    }
    auto out = context.getResults().initJobs(static_cast<unsigned>(rows.size()));
    for (size_t i = 0; i < rows.size(); ++i) rows[i](out[i]);
    return kj::READY_NOW;
  }

  kj::Promise<void> nodes(NodesContext context) override {
    kj::Vector<kj::Tuple<kj::String, kj::String>> wanted;
    for (auto& e : d_.config().nodes) wanted.add(kj::tuple(kj::str(e.key), kj::str(e.value)));
    auto out = context.getResults().initNodes(static_cast<unsigned>(wanted.size()));
    kj::Vector<kj::Promise<void>> asks;
    for (size_t i = 0; i < wanted.size(); ++i) {
      auto row = out[i];
      row.setName(kj::get<0>(wanted[i]));
      row.setAddress(kj::get<1>(wanted[i]));
      auto ask = d_.peer(kj::get<1>(wanted[i])).then([](rpc::Node::Client node) {
        return node.infoRequest().send();
      }).then([row](capnp::Response<rpc::Node::InfoResults> r) mutable {
        row.setReachable(true);
        row.setInfo(r.getInfo());
      });
      auto limited = ask.exclusiveJoin(d_.io().provider->getTimer().afterDelay(kNodeInfoTimeoutMs * kj::MILLISECONDS).then([]() {
        fail(kj::str("no answer within 3 s"));
      }));
      asks.add(limited.catch_([row](kj::Exception&& e) mutable {
        row.setReachable(false);
        row.setError(e.getDescription());
      }));
    }
    return kj::joinPromises(asks.releaseAsArray()).attach(kj::mv(wanted));
  }

  // Every move asked, made or not, goes into the history (migctl history).
  kj::Promise<void> migrate(MigrateContext context) override {
    auto p = context.getParams();
    auto move = kj::heap<Move>();
    move->time = nowSeconds();
    move->pid = p.getPid();
    move->to = kj::str(p.getTo());
    move->network = p.getNetwork();
    move->from = d_.nodeName(d_.address());
    Move& m = *move;
    auto results = context.getResults();
    // Recorded when it ends, not if it is cancelled (migctl went away; shadowd stops).
    return kj::evalNow([&]() { return moveJob(context, m); })
        .then([this, move = kj::mv(move), results]() mutable -> kj::Promise<void> {
                move->ok = true;
                move->freezeMs = results.getResult().getFreezeMs();
                move->to = d_.nodeName(results.getResult().getDestination());
                d_.log(kj::str("moved PID ", move->pid, " from ", move->from, " to ", move->to, ": frozen ",
                               move->freezeMs, " ms"));
                d_.moves().add(kj::mv(*move));
                return kj::READY_NOW;
              },
              [this, &m](kj::Exception&& e) -> kj::Promise<void> {
                m.error = oneLine(e.getDescription());
                // Refused at its first move: the job record made for it is gone again.
                if (m.jobId != 0 && d_.homeJobs().find(m.jobId) == nullptr &&
                    d_.hostedJobs().find(m.jobId) == nullptr) {
                  m.jobId = 0;
                }
                d_.log(kj::str("moving PID ", m.pid, " from ", m.from, " to ", m.to, " failed: ", m.error));
                d_.moves().add(kj::mv(m));
                return kj::mv(e);
              });
  }

  kj::Promise<void> history(HistoryContext context) override {
    d_.moves().fill(context.getResults().initMoves(static_cast<unsigned>(d_.moves().size())));
    return kj::READY_NOW;
  }

  kj::Promise<void> moveJob(MigrateContext& context, Move& move) {
    auto p = context.getParams();
    pid_t pid = p.getPid();
    auto to = d_.resolveNode(p.getTo());
    move.to = d_.nodeName(to);
    auto result = context.getResults().initResult();
    result.setDestination(to);
    // A move to where the job is would forward it to itself for ever: refused.
    auto alreadyThere = [&](kj::StringPtr where) {
      require(where != to, kj::str("the job already runs on ", p.getTo(), ": nothing to move"));
    };

    // A job whose home is here but which runs elsewhere: its host sends it on.
    if (HomeJob* job = d_.homeJobByVpid(pid); job != nullptr && job->location.size() > 0) {
      move.jobId = job->id;
      move.from = d_.nodeName(job->location);
      move.command = kj::str(job->command);
      require(!job->migrating, "this job is already migrating");
      alreadyThere(job->location);
      if (job->treeRoot != 0 && !p.getOnly()) {
        // Its tree moved as one (each member a job of its own there): it moves on as one,
        // from the host where every live member runs, root first.
        kj::Vector<HomeJob*> tree;
        KJ_IF_MAYBE(r, d_.homeJobs().find(job->treeRoot)) {
          if (!(*r)->ended) tree.add(r->get());
        }
        for (auto& e : d_.homeJobs()) {
          HomeJob& m = *e.value;
          if (m.treeRoot == job->treeRoot && m.id != job->treeRoot && !m.ended) tree.add(&m);
        }
        if (tree.size() > 1) return moveTree(context, move, kj::mv(tree), to);
      }
      job->migrating = true;
      uint64_t id = job->id;
      auto from = kj::str(job->location);
      d_.log(kj::str("migrating job ", id, " (PID ", pid, ") from ", from, " to ", to));
      return d_.peer(from)
          .then([id, token = kj::heapArray<kj::byte>(job->token), to = kj::str(to),
                 network = p.getNetwork(), mode = p.getMode(), only = p.getOnly()](rpc::Node::Client node) {
            auto req = node.sendJobRequest();
            req.setJobId(id);
            req.setToken(token);
            req.setTo(to);
            req.setNetwork(network);
            req.setMode(mode);
            req.setOnly(only);
            return req.send();
          })
          .then([result](capnp::Response<rpc::Node::SendJobResults> r) mutable {
            auto got = r.getResult();
            takeFigures(result, got);
            if (got.getMode() == "postcopy-lost") result.setProblem(got.getProblem());
          })
          .then([this, id, to = kj::str(to), result]() mutable -> kj::Promise<void> {
                  finishMigration(id, kj::StringPtr(to));
                  return afterHop(id, to, result);
                },
                [this, id](kj::Exception&& e) -> kj::Promise<void> {
                  finishMigration(id, nullptr);
                  return kj::mv(e);
                });
    }

    // A job that migrated in and runs here (migctl run on this host, not at home).
    for (auto& e : d_.hostedJobs()) {
      HostedJob& j = *e.value;
      if (j.realPid != pid && j.vpid != pid) continue;
      move.jobId = j.id;
      move.pid = j.vpid;
      move.command = kj::str(j.command);
      require(j.running && !j.leaving, "this job is not ready to migrate");
      alreadyThere(d_.address());
      j.leaving = true;
      uint64_t id = j.id;
      return d_.runSender(result, j.realPid, j.id, j.token, j.home, j.vpid, j.command, to, p.getNetwork(), false, p.getMode(),
                          p.getOnly())
          .then([this, id]() { return d_.hostedJobGone(id); })
          .catch_([this, id](kj::Exception&& e) -> kj::Promise<void> {
            KJ_IF_MAYBE(h, d_.hostedJobs().find(id)) { (*h)->leaving = false; }
            return kj::mv(e);
          });
    }

    // A process of ours that never moved: its first migration; it becomes the deputy.
    require(pid > 0, "bad PID");
    if (kill(pid, 0) != 0 && errno == ESRCH) fail(kj::str("no process with PID ", pid));
    require(!d_.admission().stopping, "this shadowd is stopping (SIGTERM): it starts no new migration");
    uid_t owner = resources::realUidOf(pid);
    require(owner == getuid(), kj::str("process ", pid, " belongs to uid ", owner, " (as the kernel reports it), not to "
                                       "this shadowd's user (uid ", getuid(), "): ask that user's shadowd"));
    require(d_.address().size() > 0, "this shadowd has no --listen address: jobs cannot come back to it");
    // A job away whose deputy has not registered again with this (restarted) shadowd
    // yet: its PID here is the deputy, not a job that never moved.
    require(!isDeputy(pid), kj::str("PID ", pid, " is the deputy of a job away from home that this shadowd has not "
                                    "learned back yet (it was restarted): try again in a few seconds"));
    alreadyThere(d_.address());
    HomeJob* job = d_.homeJobByVpid(pid);
    if (job == nullptr) {
      auto fresh = kj::heap<HomeJob>();
      uint64_t id = 0;
      auto idBytes = randomBytes(8);
      memcpy(&id, idBytes.begin(), sizeof(id));
      fresh->id = id >> 1;  // positive in every language that prints it
      fresh->token = randomBytes(32);
      fresh->vpid = pid;
      fresh->command = commandOf(pid);
      fresh->startedAt = nowSeconds() - ageSeconds(pid);
      job = fresh.get();
      d_.homeJobs().insert(job->id, kj::mv(fresh));
    }
    move.jobId = job->id;
    move.command = kj::str(job->command);
    require(!job->migrating, "this job is already migrating");
    job->migrating = true;
    uint64_t id = job->id;
    d_.log(kj::str("migrating job ", id, " (PID ", pid, ") to ", to));
    // Opened while the process is surely the job: it stays the same process as the
    // deputy, and its end (even by SIGKILL, or a deputy that failed) ends the job.
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    require(pidfd >= 0, kj::str("cannot watch process ", pid, ": ", strerror(errno)));
    auto watch = kj::heap<kj::AutoCloseFd>(pidfd);
    // A process with children moves with them (send_command.cc): each live descendant
    // gets a job record of its own, whose deputy it becomes here (docs/design.md
    // "Moving a process tree"). Zombies stay, their parent's deputy's to reap.
    auto members = kj::heap<kj::Vector<TreeMemberRecord>>();
    if (!p.getOnly()) {
      for (auto& m : resources::jobDescendants(pid, d_.config().migctl.cStr())) {
        if (m.zombie) continue;
        int fd = static_cast<int>(syscall(SYS_pidfd_open, m.pid, 0));
        if (fd < 0) continue;  // ended meanwhile: migctl send sees the tree again
        auto fresh = kj::heap<HomeJob>();
        uint64_t memberId = 0;
        auto idBytes = randomBytes(8);
        memcpy(&memberId, idBytes.begin(), sizeof(memberId));
        fresh->id = memberId >> 1;
        fresh->token = randomBytes(32);
        fresh->vpid = m.pid;
        fresh->command = commandOf(m.pid);
        fresh->startedAt = nowSeconds() - ageSeconds(m.pid);
        fresh->migrating = true;
        fresh->treeRoot = id;
        const uint64_t key = fresh->id;  // not read from `fresh` in the call that moves it
        members->add(TreeMemberRecord{key, kj::AutoCloseFd(fd)});
        d_.homeJobs().insert(key, kj::mv(fresh));
      }
    }
    kj::Vector<kj::String> memberText;
    for (auto& m : *members) {
      KJ_IF_MAYBE(j, d_.homeJobs().find(m.id)) {
        memberText.add(kj::str((*j)->vpid, ":", m.id, ":", hex((*j)->token)));
      }
    }
    auto treeMembers = kj::str(kj::strArray(memberText, " "));
    if (members->size() > 0) d_.log(kj::str("job ", id, " moves with its ", members->size(), " descendants"));
    auto memberIds = memberIdsOf(*members);
    return d_.runSender(result, pid, job->id, job->token, d_.address(), pid, job->command, to, p.getNetwork(), true,
                        p.getMode(), p.getOnly(), treeMembers)
        .then([this, id, to = kj::str(to), watch = kj::mv(watch), result, members = kj::mv(members)]() mutable -> kj::Promise<void> {
                finishMigration(id, kj::StringPtr(to));
                watchDeputy(d_, id, kj::mv(*watch));
                d_.tasks().add(followStops(d_, id));
                // A member that ended and was reaped before the sender's look (a shell's
                // `$(...)`) was left out of the tree there (send_command.cc): nothing of
                // it moved, so no record, deputy or `migctl list` row stays for it. One
                // that looks ended may be execing its deputy: looked at again a moment later.
                auto endedMember = [this](TreeMemberRecord& m) {
                  KJ_IF_MAYBE(j, d_.homeJobs().find(m.id)) { return looksEnded(m.pidfd.get(), (*j)->vpid); }
                  return true;
                };
                bool doubt = false;
                for (auto& m : *members) doubt = doubt || endedMember(m);
                auto finish = [this, id, to = kj::mv(to), result, members = kj::mv(members), endedMember]() mutable {
                  size_t moved = 0;
                  for (auto& m : *members) {
                    if (endedMember(m)) {
                      d_.log(kj::str("job ", id, ": its descendant job ", m.id, " ended before the move, not part of it"));
                      d_.homeJobs().erase(m.id);
                      m.id = 0;
                    } else {
                      ++moved;
                    }
                  }
                  KJ_IF_MAYBE(j, d_.homeJobs().find(id)) {
                    if (moved > 0) {
                      (*j)->treeRoot = id;
                      // Its deputy's copy too (finishMigration sent it one without): a
                      // restarted shadowd learns the tree back from it (registerDeputy).
                      keepRecordAtDeputy(d_, **j);
                    }
                  }
                  for (auto& m : *members) {
                    if (m.id == 0) continue;
                    finishMigration(m.id, kj::StringPtr(to));
                    watchDeputy(d_, m.id, kj::mv(m.pidfd));
                    d_.tasks().add(followStops(d_, m.id));
                  }
                  return afterHop(id, to, result);
                };
                // In this turn when there is no doubt: `migctl list` must not show the
                // job moved before its hop's follow-up (afterHop) has run.
                if (!doubt) return finish();
                return d_.io().provider->getTimer().afterDelay(kSecondLookMs * kj::MILLISECONDS).then(kj::mv(finish));
              },
              [this, id, memberIds = kj::mv(memberIds)](kj::Exception&& e) -> kj::Promise<void> {
                // Still here, untouched: no deputy, no job record (nor its members').
                finishMigration(id, nullptr);
                KJ_IF_MAYBE(j, d_.homeJobs().find(id)) {
                  if ((*j)->location.size() == 0) d_.homeJobs().erase(id);
                }
                for (uint64_t m : memberIds) {
                  KJ_IF_MAYBE(j, d_.homeJobs().find(m)) {
                    if ((*j)->location.size() == 0) d_.homeJobs().erase(m);
                  }
                }
                return kj::mv(e);
              });
  }

  // After a move: asks the destination what keeps the job from working there as it did
  // (Node.setupCheck) and puts it in the result, so migctl does not report a success
  // the job cannot live up to. A destination that cannot answer (an older shadowd)
  // leaves the result as it is: the job did move.
  // The next hop of a tree that moved together (docs/design.md "Moving a process
  // tree"): its host sends every live member in one freeze (Node.sendTree).
  kj::Promise<void> moveTree(MigrateContext& context, Move& move, kj::Vector<HomeJob*> tree, kj::StringPtr to) {
    auto p = context.getParams();
    move.command = kj::str(tree[0]->command);
    auto result = context.getResults().getResult();
    auto from = kj::str(tree[0]->location);
    for (auto* m : tree) {
      require(m->location == from, kj::str("cannot move PID ", p.getPid(), " with its tree: its members run on different "
                                           "hosts now (PID ", m->vpid, " on ", d_.nodeName(m->location), "); --only moves one alone"));
      require(!m->migrating, kj::str("PID ", m->vpid, " of this tree is already migrating"));
    }
    auto ids = kj::heapArray<uint64_t>(tree.size());
    for (size_t i = 0; i < tree.size(); ++i) {
      tree[i]->migrating = true;
      ids[i] = tree[i]->id;
    }
    d_.log(kj::str("migrating the tree of job ", tree[0]->id, " (PID ", tree[0]->vpid, ", ", tree.size(), " processes) from ",
                   from, " to ", to));
    // Two copies, one for each outcome (a lambda's captures are made in no set order).
    auto failedIds = kj::heapArray<uint64_t>(ids.asPtr());
    auto req = kj::heap<capnp::MallocMessageBuilder>();
    auto keys = req->initRoot<rpc::Node::SendTreeParams>().initJobs(static_cast<unsigned>(tree.size()));
    for (size_t i = 0; i < tree.size(); ++i) {
      keys[static_cast<unsigned>(i)].setJobId(tree[i]->id);
      keys[static_cast<unsigned>(i)].setToken(tree[i]->token);
    }
    return d_.peer(from)
        .then([req = kj::mv(req), to = kj::str(to), network = p.getNetwork(), mode = p.getMode()](rpc::Node::Client node) mutable {
          auto call = node.sendTreeRequest();
          call.setJobs(req->getRoot<rpc::Node::SendTreeParams>().getJobs());
          call.setTo(to);
          call.setNetwork(network);
          call.setMode(mode);
          return call.send();
        })
        .then([result](capnp::Response<rpc::Node::SendTreeResults> r) mutable { takeFigures(result, r.getResult()); })
        .then([this, ids = kj::mv(ids), to = kj::str(to)]() -> kj::Promise<void> {
                for (uint64_t id : ids) finishMigration(id, kj::StringPtr(to));
                return kj::READY_NOW;
              },
              [this, ids = kj::mv(failedIds)](kj::Exception&& e) -> kj::Promise<void> {
                for (uint64_t id : ids) finishMigration(id, nullptr);
                return kj::mv(e);
              });
  }

  // What follows a hop that gave the job up here: its destination's word awaited (the
  // commit went unconfirmed), the job ended (post-copy lost its pages, or its deputy
  // died), or its setup there checked.
  kj::Promise<void> afterHop(uint64_t id, kj::StringPtr to, rpc::MigrationResult::Builder result) {
    if (result.asReader().getMode() == "unconfirmed") {
      d_.tasks().add(confirmOrLose(d_, id, kj::str(to), nowSeconds() + 2 * d_.config().transferTimeoutMs / 1000.0));
      return kj::READY_NOW;
    }
    if (result.asReader().getMode() == "postcopy-lost") {
      endPostcopyLost(d_, id);
      return kj::READY_NOW;
    }
    // Its deputy died as it started (a hop from home): the watch on it ends the job there.
    if (result.asReader().getMode() == "deputy-died") return kj::READY_NOW;
    return checkSetup(id, to, result);
  }

  kj::Promise<void> checkSetup(uint64_t id, kj::StringPtr to, rpc::MigrationResult::Builder result) {
    kj::Array<kj::byte> token;
    KJ_IF_MAYBE(j, d_.homeJobs().find(id)) { token = kj::heapArray<kj::byte>((*j)->token); }
    else return kj::READY_NOW;
    return d_.peer(to)
        .then([id, token = kj::mv(token)](rpc::Node::Client node) mutable {
          auto req = node.setupCheckRequest();
          req.setJobId(id);
          req.setToken(token);
          return req.send();
        })
        .then([this, id, result](capnp::Response<rpc::Node::SetupCheckResults>&& r) mutable {
          if (r.getProblem().size() == 0) return;
          // A job that already ended (its watches broke with its deputy) had no problem.
          KJ_IF_MAYBE(j, d_.homeJobs().find(id)) {
            if ((*j)->ended) return;
          } else {
            return;
          }
          d_.log(kj::str("job ", id, " moved but cannot work as it did: ", r.getProblem()));
          result.setProblem(r.getProblem());
        }, [](kj::Exception&&) {});
  }

  kj::Promise<void> registerDeputy(RegisterDeputyContext context) override {
    auto p = context.getParams();
    if (p.getAgain() && d_.homeJobs().find(p.getJobId()) == nullptr) return relearnHomeJob(context);
    HomeJob& job = d_.homeJob(p.getJobId(), p.getToken());
    job.ownLostAfterMs = p.getLostAfterMs();
    d_.deputyRegistered(job, p.getDeputy());
    keepStandIn(d_, job, p.getStandIn());
    d_.log(kj::str("job ", job.id, ": PID ", job.vpid, " is now its deputy"));
    d_.tasks().add(followStops(d_, job.id));
    KJ_IF_MAYBE(back, job.cameBack) {
      (*back)->fulfill();  // its hop home failed and the deputy is back (deputy/homecoming.h)
      job.cameBack = nullptr;
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> deputySignal(DeputySignalContext context) override {
    auto p = context.getParams();
    HomeJob& job = d_.homeJob(p.getJobId(), p.getToken());
    int sig = p.getSignal();
    if (sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) job.stopForwarded = true;
    if (sig == SIGCONT) {
      // The deputy runs again: a stop after this one is a new one, even if followStops
      // never saw it running.
      job.stopForwarded = false;
      job.deputyStopped = false;
    }
    if (job.migrating) {
      // Delivered once the job runs again, wherever that is.
      job.signalsDuringMigration.add(PendingSignal{sig, kj::heapArray(p.getInfo()), p.getToGroup()});
      return kj::READY_NOW;
    }
    return sendSignal(d_, job, sig, p.getInfo(), p.getToGroup());
  }

  // The deputy gave the job up: its link stayed broken past --link-lost-after. The
  // record stays, listed "lost", for whoever asks where the job went, also after a
  // restart of this shadowd (lost_jobs.h); the deputy exits with status 87 once this
  // is answered.
  kj::Promise<void> linkLost(LinkLostContext context) override {
    auto p = context.getParams();
    markLinkLost(d_, d_.homeJob(p.getJobId(), p.getToken()), p.getDownMs(), p.getLimitMs());
    return kj::READY_NOW;
  }

  // Whether `pid` runs mig's deputy (this shadowd's, or one by its usual name).
  bool isDeputy(pid_t pid) {
    auto name = programOf(pid);
    kj::StringPtr ours = d_.config().deputy;
    KJ_IF_MAYBE(slash, ours.findLast('/')) { ours = ours.slice(*slash + 1); }
    return name == "mig-deputy" || name == ours;
  }

  // A deputy whose shadowd restarted registers again with the record it kept
  // (Deputy.keepRecord): the job is this host's again, listed, its signals passed on, and
  // movable. The deputy is the job's process at home: the caller's own PID.
  kj::Promise<void> relearnHomeJob(RegisterDeputyContext& context) {
    auto p = context.getParams();
    require(peerPid_ > 0 && peerUid_ == getuid(),
            "only a deputy of this shadowd's user, on its local socket, may register again");
    require(p.getToken().size() == 32, "a job token is 32 bytes");
    require(isDeputy(peerPid_), kj::str("process ", peerPid_, " (", programOf(peerPid_), ") is not a deputy (mig-deputy)"));
    auto r = p.getRecord();
    auto job = kj::heap<HomeJob>();
    job->id = p.getJobId();
    job->token = kj::heapArray<kj::byte>(p.getToken());
    job->vpid = peerPid_;
    // A deputy that was given no record (an older shadowd): what /proc tells of it.
    job->command = r.getCommand().size() > 0 ? kj::str(r.getCommand()) : commandOf(peerPid_);
    job->location = kj::str(r.getLocation());
    job->startedAt = r.getStartedAt() > 0 ? r.getStartedAt() : nowSeconds() - ageSeconds(peerPid_);
    job->treeRoot = r.getTreeRoot();
    if (r.getRelayed()) job->relayedFrom = kj::str(job->location);
    job->ownLostAfterMs = p.getLostAfterMs();
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, peerPid_, 0));
    require(pidfd >= 0, kj::str("cannot watch the deputy, process ", peerPid_, ": ", strerror(errno)));
    uint64_t id = job->id;
    HomeJob& j = *job;
    d_.homeJobs().insert(id, kj::mv(job));
    d_.deputyRegistered(j, p.getDeputy());
    keepStandIn(d_, j, p.getStandIn());
    d_.log(kj::str("job ", id, " (PID ", j.vpid, "): learned back from its deputy; it runs on ",
                   j.location.size() > 0 ? j.location.asPtr() : "a host its deputy does not know yet"));
    watchDeputy(d_, id, kj::AutoCloseFd(pidfd));
    d_.tasks().add(followStops(d_, id));
    // Its relayed login died with the shadowd before: the limit counts from now.
    if (j.relayed()) relayedLinkDown(d_, id, j.relayLogin, "this shadowd restarted");
    return kj::READY_NOW;
  }

  // The link process of a job that runs here announces it to this (restarted) shadowd
  // (shadow/link_process.h): checked, the guest record is made again and home told where
  // the job runs.
  kj::Promise<void> relearnGuest(RelearnGuestContext context) override {
    auto g = context.getParams().getGuest();
    const uint64_t id = g.getJobId();
    const pid_t linkPid = g.getLinkPid(), realPid = g.getRealPid();
    require(peerUid_ == getuid() && peerPid_ > 0, "only this shadowd's own link processes (its user) may announce a guest");
    require(peerPid_ == linkPid, kj::str("the announcing process is PID ", peerPid_, ", not the link process ", linkPid));
    require(programOf(linkPid) == "mig-link", kj::str("process ", linkPid, " is not a link process (mig-link)"));
    require(realPid > 0 && parentOf(realPid) == linkPid,
            kj::str("the job's process ", realPid, " is not a child of link process ", linkPid));
    require(g.getToken().size() == 32, "a job token is 32 bytes");
    require(g.getHome().size() > 0, "a guest needs its home");
    require(d_.hostedJobs().find(id) == nullptr, kj::str("job ", id, " is a guest here already"));
    // Home checks the token and points its record here again (Node.deputy sets where
    // the job runs). A home that says no refuses it; one that does not answer leaves it
    // to the local proof above (it learns where the job is at the job's next call).
    auto home = kj::str(g.getHome());
    auto token = kj::heapArray<kj::byte>(g.getToken());
    auto asked = d_.peer(home).then([this, id, token = kj::heapArray<kj::byte>(token)](rpc::Node::Client node) {
      auto req = node.deputyRequest();
      req.setJobId(id);
      req.setToken(token);
      req.setLocation(d_.address());
      return req.send().ignoreResult();
    });
    auto limit = d_.io().provider->getTimer().afterDelay(kRelearnHomeMs * kj::MILLISECONDS).then([]() {
      fail(kj::str("no answer within ", kRelearnHomeMs / 1000, " s"));
    });
    return asked.exclusiveJoin(kj::mv(limit))
        .then([]() { return kj::String(); },
              [this, id, home = kj::str(home)](kj::Exception&& e) -> kj::String {
                auto why = oneLine(e.getDescription());
                require(strstr(why.cStr(), "wrong job token") == nullptr,
                        kj::str("home (", home, ") does not know job ", id, " with this token: ", why));
                return kj::mv(why);
              })
        .then([this, context, id, linkPid, realPid, home = kj::mv(home), token = kj::mv(token)](kj::String homeProblem) mutable {
          auto g = context.getParams().getGuest();
          require(d_.hostedJobs().find(id) == nullptr, kj::str("job ", id, " is a guest here already"));
          require(parentOf(realPid) == linkPid, kj::str("the job's process ", realPid, " ended meanwhile"));
          auto job = kj::heap<HostedJob>();
          job->id = id;
          job->token = kj::mv(token);
          job->home = kj::mv(home);
          job->vpid = g.getVpid();
          job->realPid = realPid;
          job->command = kj::str(g.getCommand());
          job->startedAt = g.getStartedAt();
          job->running = true;
          job->network = g.getNetwork();
          job->calls = kj::refcounted<JobCalls>(d_, job->id, job->home, job->token);
          auto control = controlOverRpc(d_.tasks(), context.getParams().getControl());
          job->link = kj::heap<LinkProcess>(d_, id, linkPid, realPid, kj::mv(control.stream));
          auto exited = job->link->exited();
          auto& m = d_.metrics();
          m.forwardedCalls += g.getForwardedCalls();
          m.forwardedBytesOut += g.getForwardedBytesOut();
          m.forwardedBytesIn += g.getForwardedBytesIn();
          d_.log(kj::str("job ", id, " (PID ", job->vpid, " of ", job->home, "): learned back from its link process (PID ",
                         linkPid, "); it runs here as PID ", realPid,
                         homeProblem.size() > 0 ? kj::str("; its home was not reached (", homeProblem, ")").cStr() : ""));
          d_.hostedJobs().insert(id, kj::mv(job));
          watchGuest(d_, id, kj::mv(exited), spoolImagePath(d_.config().spoolDir, id));
          context.getResults().setControl(kj::mv(control.mine));
        });
  }

  kj::Promise<void> drain(DrainContext context) override { return localDrain(d_, kj::mv(context)); }
  kj::Promise<void> place(PlaceContext context) override { return localPlace(d_, kj::mv(context)); }

 private:
  // `to`: where the job runs now (the migration worked), or null.
  void finishMigration(uint64_t id, kj::Maybe<kj::StringPtr> to) {
    KJ_IF_MAYBE(j, d_.homeJobs().find(id)) {
      HomeJob& job = **j;
      job.migrating = false;
      KJ_IF_MAYBE(where, to) {
        job.location = kj::str(*where);
        keepRecordAtDeputy(d_, job);
      }
      // One after the other, so that realtime signals arrive in the order sent.
      auto pending = kj::heap(kj::mv(job.signalsDuringMigration));
      kj::Promise<void> chain = kj::READY_NOW;
      for (auto& s : *pending) {
        chain = chain.then([&d = d_, id, &s]() -> kj::Promise<void> {
          KJ_IF_MAYBE(still, d.homeJobs().find(id)) { return sendSignal(d, **still, s.signal, s.info, s.toGroup); }
          return kj::READY_NOW;
        });
      }
      d_.tasks().add(chain.attach(kj::mv(pending)));
    }
  }

  Daemon& d_;
  pid_t peerPid_ = 0;  // SO_PEERCRED of the connection; 0: shadowd's own use
  uid_t peerUid_ = static_cast<uid_t>(-1);
};

}  // namespace

rpc::JobStops::Client jobStops(Daemon& d, uint64_t jobId, kj::StringPtr location) {
  return kj::heap<JobStopsImpl>(d, jobId, location);
}

kj::Promise<void> sendSignal(Daemon& d, HomeJob& job, int sig, kj::ArrayPtr<const kj::byte> info, bool toGroup) {
  require(job.location.size() > 0, "the job runs here: signal it directly");
  return d.peer(job.location).then([id = job.id, token = kj::heapArray<kj::byte>(job.token), sig,
                                    info = kj::heapArray(info), toGroup](rpc::Node::Client node) {
    auto req = node.signalRequest();
    req.setJobId(id);
    req.setToken(token);
    req.setSignal(sig);
    req.setInfo(info);
    req.setToGroup(toGroup);
    return req.send().ignoreResult();
  });
}

rpc::Local::Client makeLocal(Daemon& d) { return kj::heap<LocalImpl>(d); }
rpc::Local::Client makeLocal(Daemon& d, pid_t peerPid, uid_t peerUid) { return kj::heap<LocalImpl>(d, peerPid, peerUid); }

size_t untrackedJobsHere(Daemon& d) {
  size_t n = 0;
  for (pid_t pid : shimProcesses()) {
    bool known = d.homeJobByVpid(pid) != nullptr;
    for (auto& e : d.hostedJobs()) known = known || e.value->realPid == pid;
    n += known ? 0 : 1;
  }
  return n;
}

void watchDeputy(Daemon& d, uint64_t jobId, kj::AutoCloseFd pidfd) {
  pid_t pid = 0;
  KJ_IF_MAYBE(j, d.homeJobs().find(jobId)) { pid = (*j)->vpid; }
  watchProcessEnd(d, pid, kj::mv(pidfd), [&d, jobId]() -> kj::Promise<void> {
    KJ_IF_MAYBE(j, d.homeJobs().find(jobId)) {
      HomeJob& job = **j;
      if (job.ended) return kj::READY_NOW;
      // The deputy is gone (killed, even with SIGKILL, or it failed): the job must
      // not outlive it. Its stand-in killed with it: their group was, and the job's
      // group where it runs is too (its children born there).
      const bool groupKilled = standInKilled(job);
      d.log(kj::str("job ", job.id, ": its deputy (PID ", job.vpid, ") is gone; ending the job",
                    groupKilled ? " and its group where it runs (its stand-in was killed too)" : ""));
      if (!groupKilled && job.standIn.get() >= 0) syscall(SYS_pidfd_send_signal, job.standIn.get(), SIGKILL, nullptr, 0);
      auto kill = job.location.size() > 0 ? sendSignal(d, job, SIGKILL, nullptr, groupKilled)
                                          : kj::Promise<void>(kj::READY_NOW);
      d.homeJobs().erase(jobId);
      return kill;
    }
    return kj::READY_NOW;
  });
}

}  // namespace mig::shadow
