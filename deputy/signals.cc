// Forwarding the deputy's signals to the job (signals.h).
#include "deputy/signals.h"

#include "deputy/log.h"
#include "deputy/stand_in.h"
#include "shadow/stop_watch.h"

#include <atomic>
#include <csignal>
#include <pthread.h>
#include <sys/prctl.h>
#include <cstring>
#include <ctime>
#include <unistd.h>
#include <cstdlib>
#include <cstdio>
#include <dirent.h>

namespace mig::deputy {
namespace {

// The signal kj may use for itself: 62, next to the shim's checkpoint signal (63);
// the deputy never forwards either.
constexpr int kReservedSignal = 62;
constexpr int kCheckpointSignal = 63;

}  // namespace

// All of 1..64 but SIGKILL and SIGSTOP (which cannot be caught), 32 and 33 (glibc's
// own: thread cancellation and setxid, which sigaction refuses) and 62 and 63 above.
// SIGALRM is among them: the deputy disarms the timer it inherited (the job's went with
// it), so an ALRM here was sent by someone. SIGCHLD is: the children the job forked at
// home are the deputy's now, and the job reaps them with forwarded waits when it hears
// of them.
bool passedOn(int sig) {
  return sig != SIGKILL && sig != SIGSTOP && sig != 32 && sig != 33 && sig != kReservedSignal &&
         sig != kCheckpointSignal;
}

// A member's parent in another group of the session would continue the group after a
// stop (POSIX's orphaned process group): looked for among every process in /proc.
bool groupOrphaned() {
  struct Proc {
    pid_t ppid, pgrp, sid;
  };
  auto stat = [](pid_t pid, Proc& p) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE* f = fopen(path, "r");
    if (f == nullptr) return false;
    char line[1024];
    const bool got = fgets(line, sizeof line, f) != nullptr;
    fclose(f);
    const char* after = got ? strrchr(line, ')') : nullptr;  // the name may hold anything
    return after != nullptr && sscanf(after + 2, "%*c %d %d %d", &p.ppid, &p.pgrp, &p.sid) == 3;
  };
  const pid_t group = getpgrp(), session = getsid(0);
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return false;
  bool orphaned = true;
  while (dirent* e = readdir(dir)) {
    Proc member, parent;
    const pid_t pid = static_cast<pid_t>(atoi(e->d_name));
    if (pid <= 0 || !stat(pid, member) || member.pgrp != group) continue;
    if (stat(member.ppid, parent) && parent.pgrp != group && parent.sid == session) {
      orphaned = false;
      break;
    }
  }
  closedir(dir);
  return orphaned;
}

namespace {

std::atomic<uint32_t> g_continued{0};

// Stop signals that can be caught: once the job has them, the deputy stops itself.
bool stops(int sig) { return sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU; }

// Stops the deputy with `sig` itself, so that its parent's waitpid(WUNTRACED) reports
// that signal, as for a local job (a shell prints "Stopped (tty input)" for a TTIN).
// The kernel drops TSTP, TTIN and TTOU at their default action in an orphaned process
// group; SIGSTOP then, as the job has it. Every signal is blocked here (takeSignals):
// the signal is made pending on this thread with the default action, then let in.
void stopAs(int sig) {
  if (groupOrphaned()) {
    raise(SIGSTOP);
    return;
  }
  struct sigaction dfl {}, old {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, &old);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  raise(sig);
  pthread_sigmask(SIG_UNBLOCK, &one, nullptr);  // stopped here until a SIGCONT
  pthread_sigmask(SIG_BLOCK, &one, nullptr);
  sigaction(sig, &old, nullptr);
}

}  // namespace

uint32_t continuedCount() { return g_continued.load(std::memory_order_acquire); }

void takeSignals(uint64_t dropMask) {
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, nullptr);
  for (int sig = 1; sig <= 64; ++sig) {
    if (!(dropMask & (1ull << (sig - 1)))) continue;
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&one, nullptr, &zero) == sig) {
    }
  }
  // kj wakes its event loop with SIGUSR1 unless told otherwise; SIGUSR1 is the job's.
  kj::UnixEventPort::setReservedSignal(kReservedSignal);
  for (int sig = 1; sig <= 64; ++sig)
    if (passedOn(sig)) kj::UnixEventPort::captureSignal(sig);
}

void startStopWatchThread() {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);  // it only sleeps
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t thread;
  const int r = pthread_create(
      &thread, &attr,
      [](void*) -> void* {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, nullptr);
        prctl(PR_SET_NAME, kStopWatchThread, 0, 0, 0);
        for (;;) pause();  // every signal blocked: never returns
      },
      nullptr);
  pthread_attr_destroy(&attr);
  // Without it shadowd looks at the deputy's state from time to time instead.
  if (r != 0) log(kj::str("no stop-watch thread (", strerror(r), "): shadowd will poll for stops"));
}

SignalForwarder::SignalForwarder(kj::UnixEventPort& port, kj::TaskSet& tasks, rpc::Local::Client local,
                                 uint64_t jobId, kj::ArrayPtr<const kj::byte> token)
    : port_(port), tasks_(tasks), local_(kj::mv(local)), jobId_(jobId), token_(token) {
  for (int sig = 1; sig <= 64; ++sig)
    if (passedOn(sig)) tasks_.add(watch(sig));
}

kj::Promise<void> SignalForwarder::watch(int sig) {
  return port_.onSignal(sig).then([this, sig](siginfo_t info) {
    if (sig == SIGCONT) g_continued.fetch_add(1, std::memory_order_acq_rel);
    // Home's shadowd following a stop or continue of the job where it runs
    // (rpc::JobStops): the job has it already.
    if (info.si_code == SI_QUEUE && info.si_value.sival_int == shadow::kFollowedStopValue) {
      if (stops(sig)) stopAs(sig);
      return watch(sig);
    }
    // The deputy's own (a SIGPIPE from a write it ran for the job, which gets EPIPE
    // back): not the job's to hear again. But a TTIN (TTOU) it sent its group for the
    // job's read of (write to) the terminal from the background (call_runner.cc) is the job's.
    bool own = (info.si_code == SI_USER || info.si_code == SI_TKILL) && info.si_pid == getpid() && sig != SIGTTIN &&
               sig != SIGTTOU;
    if (!own) {
      queue_.push_back(info);
      if (!sending_ && !waitingForShadowd_) sendNext();
    }
    return watch(sig);
  });
}

void SignalForwarder::reconnected(rpc::Local::Client local) {
  local_ = kj::mv(local);
  waitingForShadowd_ = false;
  if (!sending_) sendNext();
}

void SignalForwarder::sendNext() {
  if (queue_.empty()) {
    sending_ = false;
    return;
  }
  sending_ = true;
  const siginfo_t info = queue_.front();
  queue_.pop_front();
  // Sent to the group (the stand-in caught it too): to the job's group where it runs.
  kj::Promise<bool> toGroup = false;
  KJ_IF_MAYBE(s, standIn_) { toGroup = s->sentToGroup(info); }
  tasks_.add(toGroup.then([this, info](bool toGroup) { send(info, toGroup); }));
}

void SignalForwarder::send(const siginfo_t& info, bool toGroup) {
  log(kj::str("signal ", info.si_signo, " (si_code ", info.si_code, ", from PID ", info.si_pid, ") passed on to the job",
              toGroup ? "'s group where it runs (its stand-in caught it too)" : ""));
  auto req = local_.deputySignalRequest();
  req.setJobId(jobId_);
  req.setToken(token_);
  req.setSignal(info.si_signo);
  req.setInfo(kj::arrayPtr(reinterpret_cast<const kj::byte*>(&info), sizeof info));
  req.setToGroup(toGroup);
  // One at a time, each once the job's host has delivered the one before: realtime
  // signals arrive in the order sent.
  tasks_.add(req.send().ignoreResult().then([] { return true; }, [this, info](kj::Exception&& e) {
                   // Not delivered by the job's host (its own link broke): not held.
                   if (e.getType() != kj::Exception::Type::DISCONNECTED ||
                       e.getDescription().startsWith("remote exception")) {
                     return false;
                   }
                   // Our shadowd is gone: held, in order, for the one that comes back.
                   queue_.push_front(info);
                   waitingForShadowd_ = true;
                   return false;
                 })
                 .then([this, sig = info.si_signo](bool) {
                   if (waitingForShadowd_) {
                     sending_ = false;
                     return;
                   }
                   // The job has its TSTP (TTIN, TTOU) now: stop the deputy too, so the
                   // parent at home sees its child stop (waitpid WUNTRACED) as it would
                   // the job's, by the same signal. SIGCONT at home continues it, and the job.
                   if (stops(sig)) stopAs(sig);
                   sendNext();
                 }));
}

}  // namespace mig::deputy
