// See checkpoint.h. Everything between the first checkpoint signal and the release
// runs without allocation or locks: other threads may be parked holding malloc's.
#include "shim/checkpoint.h"
#include "shim/log.h"
#include "shim/park_signals.h"
#include "shim/posix_timers.h"
#include "shim/proc_dir.h"

#include "shim/forward/clock_shift.h"
#include "shim/forward/forward.h"
#include "shim/raw_syscall.h"
#include "shim/real_function.h"
#include "shim/runtime.h"

#include <asm/prctl.h>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <csignal>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

// glibc >= 2.35 publishes where it registered each thread's rseq area.
extern "C" {
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));
}

namespace mig::shim {
namespace {

constexpr uint32_t kRseqSig = 0x53053053;  // glibc's RSEQ_SIG on x86
constexpr int kParkTimeoutMs = 5000;       // a thread that cannot take the signal (raw mask)
constexpr int kCommandTimeoutMs = 300000;  // migctl writing a huge image
constexpr int kDelegateClaimMs = 5000;     // every other thread is parked: one takes it at once

int64_t monotonicNs() {
  struct timespec ts;
  rawSyscall(SYS_clock_gettime, CLOCK_MONOTONIC, reinterpret_cast<long>(&ts));
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void futexWait(std::atomic<uint32_t>* word, uint32_t expected, const struct timespec* timeout) {
  rawSyscall(SYS_futex, reinterpret_cast<long>(word), FUTEX_WAIT_PRIVATE, expected,
             reinterpret_cast<long>(timeout));
}

void futexWakeAll(std::atomic<uint32_t>* word) {
  rawSyscall(SYS_futex, reinterpret_cast<long>(word), FUTEX_WAKE_PRIVATE, 0x7fffffff);
}

void fillSlot(control::ThreadSlot& s, void* uc, bool isControl) {
  s.realTid = static_cast<int32_t>(rawSyscall(SYS_gettid));
  if (t_vtid == 0) t_vtid = s.realTid;
  s.vtid = t_vtid;
  if (s.realTid != t_vtid && t_formerTids[0] != s.realTid) {
    for (int k = kFormerTids - 1; k > 0; --k) t_formerTids[k] = t_formerTids[k - 1];
    t_formerTids[0] = s.realTid;
  }
  s.ucontextAddr = reinterpret_cast<uint64_t>(uc);
  rawSyscall(SYS_arch_prctl, ARCH_GET_FS, reinterpret_cast<long>(&s.kernel.fsBase));
  rawSyscall(SYS_arch_prctl, ARCH_GET_GS, reinterpret_cast<long>(&s.kernel.gsBase));
  rawSyscall(SYS_prctl, PR_GET_TID_ADDRESS, reinterpret_cast<long>(&s.kernel.tidAddress));
  size_t len = 0;
  rawSyscall(SYS_get_robust_list, 0, reinterpret_cast<long>(&s.kernel.robustList), reinterpret_cast<long>(&len));
  s.kernel.robustListLen = len;
  if (&__rseq_size != nullptr && __rseq_size > 0) {
    s.kernel.rseqAddr = reinterpret_cast<uint64_t>(__builtin_thread_pointer()) + __rseq_offset;
    s.kernel.rseqLen = 32;  // sizeof(struct rseq) as glibc registers it
    s.kernel.rseqSig = kRseqSig;
  }
  stack_t ss;
  if (rawSyscall(SYS_sigaltstack, 0, reinterpret_cast<long>(&ss)) == 0) {
    s.kernel.altStackSp = reinterpret_cast<uint64_t>(ss.ss_sp);
    s.kernel.altStackSize = ss.ss_size;
    s.kernel.altStackFlags = ss.ss_flags & ~SS_ONSTACK;
  }
  s.isControlThread = isControl;
}

void writeAll(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    long r = rawSyscall(SYS_write, fd, reinterpret_cast<long>(c), static_cast<long>(n));
    if (r == -EINTR) continue;
    if (r <= 0) return;
    c += r;
    n -= static_cast<size_t>(r);
  }
}

constexpr size_t kMaxDeputyArgv = 64, kMaxDeputyEnv = 4096;

// The deputy's argv and environment from kOpBecomeDeputy's NUL-separated args:
// NAME=VALUE entries among them are for the environment (the job token: never on a
// command line, which every user can read), then the program's own but LD_PRELOAD;
// `first` goes first into the environment when not null. False if malformed.
bool deputyExecArgs(char* args, size_t len, char** argv, char** envp, char* first) {
  size_t argc = 0, envc = 0;
  if (first != nullptr) envp[envc++] = first;
  for (size_t i = 0; i < len && argc + 1 < kMaxDeputyArgv && envc + 1 < kMaxDeputyArgv; ++i) {
    if (i != 0 && args[i - 1] != '\0') continue;
    if (argc > 0 && strncmp(args + i, "MIG_", 4) == 0 && strchr(args + i, '=') != nullptr) envp[envc++] = args + i;
    else argv[argc++] = args + i;
  }
  argv[argc] = nullptr;
  if (argc == 0 || len == 0 || args[len - 1] != '\0') return false;
  for (char** e = environ; *e != nullptr && envc + 1 < kMaxDeputyEnv; ++e) {
    if (strncmp(*e, "LD_PRELOAD=", 11) != 0) envp[envc++] = *e;
  }
  envp[envc] = nullptr;
  return true;
}

// The job migrated and its home process becomes the deputy (deputy/main.cc):
// exec it in place, from this thread, while every other thread is parked. The job's
// fds stay open (close-on-exec cleared: the deputy holds them for the job); ours are
// close-on-exec and go. The deputy runs without the shim. No allocation here: other
// threads may be parked holding malloc's lock. Returns only if the exec failed: its
// errno, the fds' close-on-exec as it was.
// Runs in a thread of the program (the delegate below): exec keeps the table of the
// thread that calls it, and the deputy needs the program's.
int execDeputy(char* args, size_t len) {
  Runtime& rt = g_runtime;
  static char* argv[kMaxDeputyArgv];
  static char* envp[kMaxDeputyEnv];
  if (!deputyExecArgs(args, len, argv, envp, nullptr)) return EINVAL;
  // The fds whose close-on-exec is cleared below, to set it again if the exec fails
  // (the job may then go on here: kOpTryDeputy).
  static int cleared[65536];
  size_t nCleared = 0;
  bool overflow = false;
  auto restore = [&]() {
    for (size_t i = 0; i < nCleared; ++i) rawSyscall(SYS_fcntl, cleared[i], F_SETFD, FD_CLOEXEC);
  };
  // thread-self: this thread's table (/proc/self/fd is the main thread's).
  const bool own = rt.controlOwnTable;  // then the control fds are not in this table
  bool listed = forEachNumberedEntry("/proc/thread-self/fd", [&](int fd, int dir) {
    if (fd != dir && fd != rt.logFd - 1 &&
        (own || (fd != rt.controlConn && fd != rt.controlListen && fd != rt.controlAlias && fd != rt.controlWake - 1))) {
      long flags = rawSyscall(SYS_fcntl, fd, F_GETFD);
      if (flags <= 0 || !(flags & FD_CLOEXEC)) return;
      if (nCleared == sizeof(cleared) / sizeof(cleared[0])) {
        overflow = true;
        return;
      }
      cleared[nCleared++] = fd;
      rawSyscall(SYS_fcntl, fd, F_SETFD, 0);  // the job's fds, for the deputy
    }
  });
  if (!listed || overflow) {
    restore();
    return overflow ? EMFILE : EIO;
  }
  long r = rawSyscall(SYS_execve, reinterpret_cast<long>(argv[0]), reinterpret_cast<long>(argv), reinterpret_cast<long>(envp));
  restore();
  return r < 0 ? static_cast<int>(-r) : EIO;
}

// Wakes the parked threads of the program: to take delegated work, or to go on.
void wakeParked() {
  Runtime& rt = g_runtime;
  rt.parkSeq.fetch_add(1);
  futexWakeAll(&rt.parkSeq);
}

void releaseParked() {
  Runtime& rt = g_runtime;
  rt.release.fetch_add(1);
  futexWakeAll(&rt.release);
  wakeParked();
}

// In a parked thread of the program: takes the control thread's pending work, if any.
void serveDelegated() {
  Runtime& rt = g_runtime;
  if (rt.delegateTid != 0 && rawSyscall(SYS_gettid) != rt.delegateTid) return;
  uint32_t op = rt.delegateOp.load();
  if ((op != kDelegatePrepare && op != kDelegateExecDeputy) || !rt.delegateOp.compare_exchange_strong(op, kDelegateRunning)) {
    return;
  }
  if (op == kDelegatePrepare) forward::prepareCheckpoint();
  else rt.deputyExecError = execDeputy(rt.deputyArgs, rt.deputyArgsLen);  // returns only if the exec failed
  rt.delegateOp.store(kDelegateDone);
  futexWakeAll(&rt.delegateOp);
}

// From the control thread while every other thread is parked: has one of them run
// `op` in the program's fd table, when the control thread has a table of its own.
// False if none took it in time (then it is not done at all).
bool delegate(uint32_t op) {
  Runtime& rt = g_runtime;
  if (!rt.controlOwnTable || rt.parked.load() == 0) {  // one table: run it here, as ever
    if (op == kDelegatePrepare) forward::prepareCheckpoint();
    else rt.deputyExecError = execDeputy(rt.deputyArgs, rt.deputyArgsLen);
    return true;
  }
  // The main thread if it is parked: the work runs on the stack the thread was stopped
  // on, and a thread the program made may have a small one.
  const pid_t pid = static_cast<pid_t>(rawSyscall(SYS_getpid));
  rt.delegateTid = 0;
  for (uint32_t i = 0; i < rt.nextSlot.load() && i < control::kMaxThreads; ++i) {
    if (rt.block.threads[i].realTid == pid && !rt.block.threads[i].isControlThread) rt.delegateTid = pid;
  }
  rt.delegateOp.store(op);
  wakeParked();
  const int64_t deadline = monotonicNs() + static_cast<int64_t>(kDelegateClaimMs) * 1000000;
  for (;;) {
    uint32_t v = rt.delegateOp.load();
    if (v == kDelegateDone) break;
    if (v == op && monotonicNs() > deadline && rt.delegateOp.compare_exchange_strong(v, kDelegateNone)) return false;
    struct timespec slice = {0, 20 * 1000 * 1000};
    futexWait(&rt.delegateOp, v, &slice);
  }
  rt.delegateOp.store(kDelegateNone);
  return true;
}

// The job goes on in this process: ITIMER_REAL again with the time it had left at the
// freeze (fillProcessState stopped it), so frozen time does not count, as after a restart.
void rearmItimer(const control::Block& b) {
  struct itimerval it {};
  it.it_value.tv_sec = b.itimerValueNs / 1000000000;
  it.it_value.tv_usec = (b.itimerValueNs % 1000000000) / 1000;
  it.it_interval.tv_sec = b.itimerIntervalNs / 1000000000;
  it.it_interval.tv_usec = (b.itimerIntervalNs % 1000000000) / 1000;
  rawSyscall(SYS_setitimer, ITIMER_REAL, reinterpret_cast<long>(&it), 0);
}

// The control thread's part of the handler: report, then wait for migctl's verdict.
void controlThreadParked() {
  Runtime& rt = g_runtime;
  control::Reply reply{};
  reply.magic = control::kMagic;
  reply.status = control::kOk;
  reply.blockAddr = reinterpret_cast<uint64_t>(&rt.block);
  reply.blockSize = sizeof(rt.block);
  writeAll(rt.controlConn, &reply, sizeof(reply));

  // Commands until one lets the job go on: a kOpTryDeputy whose exec failed waits for
  // the next (resume, or another try).
  struct pollfd p = {rt.controlConn, POLLIN, 0};
  for (;;) {
    control::Request cmd{};
    long got = 0;
    if (rawSyscall(SYS_poll, reinterpret_cast<long>(&p), 1, kCommandTimeoutMs) > 0) {
      got = rawSyscall(SYS_read, rt.controlConn, reinterpret_cast<long>(&cmd), sizeof(cmd));
    }
    const bool valid = got == sizeof(cmd) && cmd.magic == control::kMagic;
    if (valid && cmd.op == control::kOpExit) rawSyscall(SYS_exit_group, control::kCheckpointedStatus);
    const bool onClose = cmd.op == control::kOpBecomeDeputyOnClose, trying = cmd.op == control::kOpTryDeputy;
    if (!valid || !(cmd.op == control::kOpBecomeDeputy || onClose || trying)) break;
    static char args[control::kMaxDeputyArgs];
    long n = 0;
    if (rawSyscall(SYS_poll, reinterpret_cast<long>(&p), 1, kCommandTimeoutMs) > 0) {
      n = rawSyscall(SYS_read, rt.controlConn, reinterpret_cast<long>(args), sizeof(args));
    }
    rt.deputyExecError = EINVAL;
    if (n > 0) {
      rt.deputyArgs = args;
      rt.deputyArgsLen = static_cast<size_t>(n);
      // Given up already (never resumed from here on); the exec waits for the sender's
      // end of this connection, so that it does not share the CPU with the hop's last
      // step. Its end comes also if it dies.
      char ignored;
      while (onClose && rawSyscall(SYS_poll, reinterpret_cast<long>(&p), 1, kCommandTimeoutMs) > 0 &&
             rawSyscall(SYS_read, rt.controlConn, reinterpret_cast<long>(&ignored), 1) > 0) {
      }
      if (!delegate(kDelegateExecDeputy)) rt.deputyExecError = EAGAIN;  // returns only if the exec failed
    }
    // Not given up yet (the hop is not committed): the job stays, and the sender hears why.
    // Given up (the job runs elsewhere now: never on here too): ended as killed, which
    // its parent sees and home's watch on this process follows (ends the job there).
    if (!trying) {
      rawSyscall(SYS_kill, rawSyscall(SYS_getpid), SIGKILL);
      rawSyscall(SYS_exit_group, 127);
    }
    control::Reply failed{};
    failed.magic = control::kMagic;
    failed.status = control::kDeputyExecFailed;
    failed.reserved = static_cast<uint32_t>(rt.deputyExecError);
    writeAll(rt.controlConn, &failed, sizeof(failed));
  }
  // Resume: on kOpResume, and also when migctl vanished, so the job never stays frozen.
  rearmItimer(rt.block);
  rearmPosixTimers(rt.block);
}

void checkpointHandler(int, siginfo_t*, void* uc) {
  int savedErrno = errno;
  Runtime& rt = g_runtime;
  if (rt.phase.load() != kPhaseStopping) {  // late or stray: nothing to do
    errno = savedErrno;
    return;
  }
  t_checkpointInterrupted = 1;
  uint32_t generation = rt.release.load();
  bool isControl = static_cast<pid_t>(rawSyscall(SYS_gettid)) == rt.controlTid;
  uint32_t i = rt.nextSlot.fetch_add(1);
  if (i < control::kMaxThreads) fillSlot(rt.block.threads[i], uc, isControl);
  int64_t parkedAt = monotonicNs();
  if (isControl) {
    controlThreadParked();
    rt.frozenNs += monotonicNs() - parkedAt;
    rt.phase.store(kPhaseIdle);
    releaseParked();
  } else {
    rt.parked.fetch_add(1);
    futexWakeAll(&rt.parked);
    for (;;) {
      const uint32_t seq = rt.parkSeq.load();
      if (rt.release.load() != generation) break;
      serveDelegated();
      futexWait(&rt.parkSeq, seq, nullptr);
    }
    settleInterruptedCall(static_cast<ucontext_t*>(uc));
  }
  errno = savedErrno;
}

// Signals every thread but the caller that has not been signalled yet; returns how
// many threads (besides the caller) there are in total.
uint32_t signalThreads(pid_t* signalled, uint32_t& signalledCount) {
  pid_t self = static_cast<pid_t>(rawSyscall(SYS_gettid));
  pid_t pid = static_cast<pid_t>(rawSyscall(SYS_getpid));
  uint32_t total = 0;
  forEachNumberedEntry("/proc/self/task", [&](pid_t tid, int) {
    if (tid == self) return;
    ++total;
    bool already = false;
    for (uint32_t k = 0; k < signalledCount; ++k) already = already || signalled[k] == tid;
    if (!already && signalledCount < control::kMaxThreads) {
      signalled[signalledCount++] = tid;
      rawSyscall(SYS_tgkill, pid, tid, kCheckpointSignal);
    }
  });
  return total;
}

bool fillProcessState(control::Block& b) {
  Runtime& rt = g_runtime;
  b.magic = control::kMagic;
  b.version = control::kVersion;
  b.vpid = rt.vpid;
  b.vppid = rt.vppid;
  b.shimFdCount = 0;
  // Only the shim's fds in the program's table (the one the capture reads): in a table of
  // its own, the control thread's numbers may be the program's there.
  if (!rt.controlOwnTable) {
    b.shimFds[b.shimFdCount++] = rt.controlConn;
    if (rt.controlListen >= 0) b.shimFds[b.shimFdCount++] = rt.controlListen;
    if (rt.controlAlias >= 0) b.shimFds[b.shimFdCount++] = rt.controlAlias;
    if (rt.controlWake > 0) b.shimFds[b.shimFdCount++] = rt.controlWake - 1;
  }
  if (rt.self.pipeFd >= 0) b.shimFds[b.shimFdCount++] = rt.self.pipeFd;  // a self request's helper
  if (rt.logFd > 0) b.shimFds[b.shimFdCount++] = rt.logFd - 1;  // MIG_LOG's (log.h)
  // A job away from home: which of its fds are stand-ins for its fds at home.
  static_assert(sizeof(b.homeFds) == sizeof(rt.forward.config.forwardedFds));
  const bool away = rt.forward.status.load() == forward::kActive;
  for (size_t i = 0; i < control::kMaxHomeFds / 64; ++i) {
    b.homeFds[i] = away ? __atomic_load_n(&rt.forward.config.forwardedFds[i], __ATOMIC_ACQUIRE) : 0;
  }
  b.brk = static_cast<uint64_t>(rawSyscall(SYS_brk, 0));
  b.resumeInfoAddr = reinterpret_cast<uint64_t>(&rt.resume);
  b.resumeEntry = reinterpret_cast<uint64_t>(&mig_resumed_thread);
  // Relay connections are not part of the image; the program's fds are looked at.
  if (!delegate(kDelegatePrepare)) return false;
  // ITIMER_REAL (alarm) is stopped, not only read: running on, it could fire at home
  // after the read, once there and once more from the time left where the job goes on.
  // rearmItimer sets it again if the job goes on here.
  struct itimerval it {}, stop {};
  rawSyscall(SYS_setitimer, ITIMER_REAL, reinterpret_cast<long>(&stop), reinterpret_cast<long>(&it));
  b.itimerValueNs = static_cast<int64_t>(it.it_value.tv_sec) * 1000000000 + it.it_value.tv_usec * 1000;
  b.itimerIntervalNs =
      static_cast<int64_t>(it.it_interval.tv_sec) * 1000000000 + it.it_interval.tv_usec * 1000;
  fillPosixTimers(b);
  for (int sig = 1; sig <= 64; ++sig) {
    control::KernelSigaction k{};
    rawSyscall(SYS_rt_sigaction, sig, 0, reinterpret_cast<long>(&k), 8);
    b.sigactions[sig - 1] = k;
  }
  return true;
}

}  // namespace

void installCheckpointHandler() {
  struct sigaction sa {};
  sa.sa_sigaction = checkpointHandler;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&sa.sa_mask);  // app signals wait (pending, so they are saved) while parked
  MIG_REAL(sigaction)(kCheckpointSignal, &sa, nullptr);  // ours refuses this signal
}

bool runCheckpoint(int conn, const control::Request& request) {
  Runtime& rt = g_runtime;
  if (request.requesterPid > 0) prctl(PR_SET_PTRACER, request.requesterPid, 0, 0, 0);
  rt.controlConn = conn;
  if (hasSigevThreadTimer()) {
    control::Reply reply{control::kMagic, control::kSigevThread, 0, 0, 0};
    writeAll(rt.controlConn, &reply, sizeof(reply));
    return false;
  }
  rt.resume.magic = 0;
  memset(&rt.block, 0, sizeof(rt.block));
  rt.nextSlot.store(0);
  rt.parked.store(0);
  rt.phase.store(kPhaseStopping);

  // Threads may be created while we signal: list again until every one is parked.
  static pid_t signalled[control::kMaxThreads];
  uint32_t signalledCount = 0;
  int64_t deadline = monotonicNs() + static_cast<int64_t>(kParkTimeoutMs) * 1000000;
  bool allParked = false;
  while (monotonicNs() < deadline) {
    uint32_t total = signalThreads(signalled, signalledCount);
    uint32_t parked = rt.parked.load();
    if (parked >= total) {
      if (signalThreads(signalled, signalledCount) == total) {
        allParked = true;
        break;
      }
      continue;
    }
    struct timespec slice = {0, 20 * 1000 * 1000};
    futexWait(&rt.parked, parked, &slice);
  }
  if (allParked && rt.resume.restorerEnd > rt.resume.restorerStart) {
    // Every thread is in the shim: none runs the restorer's leftover code any more.
    rawSyscall(SYS_munmap, static_cast<long>(rt.resume.restorerStart),
               static_cast<long>(rt.resume.restorerEnd - rt.resume.restorerStart));
    rt.resume.restorerStart = rt.resume.restorerEnd = 0;
  }
  if (!allParked || !fillProcessState(rt.block)) {
    control::Reply reply{control::kMagic, control::kThreadTimeout, 0, 0, 0};
    writeAll(rt.controlConn, &reply, sizeof(reply));
    rt.phase.store(kPhaseIdle);
    releaseParked();
    return false;
  }
  // The job's own monotonic clock, which the next host continues from.
  rt.block.monotonicNs = monotonicNs() + forward::jobMonotonicShiftNs();
  rt.block.threadCount = rt.nextSlot.load() + 1;  // + this thread, about to park
  // Park ourselves through the same handler, so our registers are saved the same way.
  rawSyscall(SYS_tgkill, rawSyscall(SYS_getpid), rawSyscall(SYS_gettid), kCheckpointSignal);
  // Here either the threads were released, or we are a restored copy.
  if (rt.resume.magic == plan::kResumeMagic) {
    rt.phase.store(kPhaseIdle);
    rt.restored = true;
    rt.controlTid = realTid();  // the next checkpoint must know this thread again
    rt.frozenNs += rt.resume.monotonicNs - rt.block.monotonicNs;
    // The control fds are the checkpointed process's, left out of the image: here their
    // numbers may be the program's (a migrated job's checkpoint connection took the
    // lowest free one). Forgotten before any thread of the job runs, or its first fork
    // would close that fd in the child (afterForkInChild: bash's `$(...)` child lost its
    // pipe, EBADF) and a dup2 onto it would move the program's file aside (own_fds.cc).
    // serve() listens anew.
    rt.controlListen = rt.controlAlias = rt.controlConn = rt.self.pipeFd = -1;
    rt.controlWake = 0;
    rt.controlOwnTable = false;
    reopenLog();  // before any thread of the job runs and logs
    forward::onRestored(rt.resume.configFd);  // the other threads wait in mig_resumed_thread
    if (logging()) {
      const bool forwards = rt.forward.status.load() == forward::kActive;
      LogLine() << "restored on this host as PID " << static_cast<int64_t>(realPid())
                << (forwards                      ? ", its home calls forwarded to its deputy"
                    : rt.resume.configFd >= 0 ? ", back home in its deputy's place: nothing forwarded"
                                              : "");
    }
    return true;
  }
  return false;
}

// The child that tries the exec for probeDeputy: it shares our memory (no copy of a
// big job's), runs on a stack of its own with every signal blocked (no handler of the
// program runs in it), and leaves only through the exec or _exit.
namespace {
struct Probe {
  char** argv;
  char** envp;
  int execError;
};
alignas(16) char g_probeStack[64 * 1024];

int probeChild(void* arg) {
  auto* p = static_cast<Probe*>(arg);
  long r = rawSyscall(SYS_execve, reinterpret_cast<long>(p->argv[0]), reinterpret_cast<long>(p->argv),
                      reinterpret_cast<long>(p->envp));
  p->execError = r < 0 ? static_cast<int>(-r) : EIO;
  rawSyscall(SYS_exit, 127);
  return 0;
}
}  // namespace

int probeDeputy(char* args, size_t len) {
  static char* argv[kMaxDeputyArgv];
  static char* envp[kMaxDeputyEnv];
  static char probeWord[] = "MIG_DEPUTY_PROBE=1";  // deputy/main.cc ends at once
  if (!deputyExecArgs(args, len, argv, envp, probeWord)) return EINVAL;
  Probe probe{argv, envp, 0};
  uint64_t all = ~0ull, old = 0;
  rawSyscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&all), reinterpret_cast<long>(&old), 8);
  // CLONE_VFORK: back here once the child has exec'd or ended. Exit signal 0: no
  // SIGCHLD for the program, which could not wait for this child either (__WALL only).
  int pid = clone(probeChild, g_probeStack + sizeof(g_probeStack), CLONE_VM | CLONE_VFORK, &probe);
  const int cloneError = pid < 0 ? errno : 0;
  rawSyscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&old), 0, 8);
  if (pid < 0) return cloneError;
  int status = 0;
  while (rawSyscall(SYS_wait4, pid, reinterpret_cast<long>(&status), __WALL, 0) == -EINTR) {
  }
  if (probe.execError != 0) return probe.execError;
  // It exec'd, but a program that cannot run (a library missing: the loader's 127)
  // is no deputy either.
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : ENOEXEC;
}

}  // namespace mig::shim
