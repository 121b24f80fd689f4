// The SIGSYS handler: every system call an application thread makes outside the
// shim's code arrives here once forwarding is active (syscall user dispatch), with its
// number and arguments in the trapped context. It either forwards the call home (the
// table in rsc/ has a row for it and it concerns home: a home fd, or a path outside
// the host-local paths) or runs it here from the shim's code, and puts the result in
// rax. A few calls are never simply re-issued: rt_sigreturn (the frame is the
// application's, not ours), signal masks and actions (signals.cc), clone & co.
// (clone.cc), and the calls that create or drop fds (fd_mirror.cc).
//
// The handler runs with every signal blocked, uses no lock, no allocation and no
// libc function that makes a system call, and leaves errno alone.
#include "shim/forward/signals.h"
#include "shim/forward/child_pids.h"
#include "shim/forward/child_table.h"
#include "shim/forward/clock_shift.h"
#include "shim/forward/exec_handoff.h"
#include "shim/forward/connection.h"
#include "shim/forward/locality.h"
#include "shim/forward/readiness_stand_in.h"
#include "shim/forward/state.h"
#include "shim/forward/sud.h"
#include "shim/forward/trampolines.h"
#include "shim/forward/trapped_call.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

namespace mig::forward {
namespace {

using rsc::Arg;
using rsc::CallId;
using shim::rawSyscall;

const char kEmptyPath[] = "";

State& state() { return shim::g_runtime.forward; }

// Calls that never wait, so they need not open the handler to the application's
// signals (which costs two system calls). Anything not listed may block.
bool neverBlocks(long nr) {
  switch (nr) {
    case SYS_close: case SYS_fstat: case SYS_newfstatat: case SYS_statx: case SYS_lseek:
    case SYS_mmap: case SYS_mprotect: case SYS_munmap: case SYS_mremap: case SYS_madvise:
    case SYS_brk: case SYS_rt_sigaction: case SYS_getpid: case SYS_gettid: case SYS_getppid:
    case SYS_getuid: case SYS_geteuid: case SYS_getgid: case SYS_getegid: case SYS_clock_gettime:
    case SYS_clock_getres: case SYS_gettimeofday: case SYS_time: case SYS_sched_yield:
    case SYS_getcwd: case SYS_uname: case SYS_getrlimit: case SYS_prlimit64: case SYS_set_robust_list:
    case SYS_rseq: case SYS_arch_prctl: case SYS_prctl: case SYS_exit: case SYS_exit_group:
    case SYS_sigaltstack: case SYS_dup: case SYS_dup2: case SYS_dup3: case SYS_getdents64:
    case SYS_pipe2: case SYS_socket: case SYS_getsockname: case SYS_setsockopt: case SYS_getsockopt:
    case SYS_eventfd2: case SYS_epoll_create1: case SYS_epoll_ctl: case SYS_memfd_create:
    case SYS_sched_getaffinity: case SYS_getrusage: case SYS_times: case SYS_sysinfo: case SYS_umask:
    case SYS_kill: case SYS_tgkill: case SYS_tkill: case SYS_getpgid: case SYS_getsid:
    case SYS_getpgrp: case SYS_readlink: case SYS_readlinkat: case SYS_access: case SYS_faccessat:
    case SYS_faccessat2: case SYS_mkdirat: case SYS_unlinkat: case SYS_set_tid_address:
    case SYS_getrandom: case SYS_fork: case SYS_clone: case SYS_clone3:
      return true;
    default:
      return false;
  }
}

// Arguments that are temporary signal masks: the application's mask while the call
// waits (and while handlers run from it), so SIGSYS must not be in it.
int64_t* tempMaskArg(long nr, int64_t* a) {
  switch (nr) {
    case SYS_rt_sigsuspend: return &a[0];
    case SYS_ppoll: return &a[3];
    case SYS_epoll_pwait: case SYS_epoll_pwait2: return &a[4];
    default: return nullptr;
  }
}

long runWith(long nr, const int64_t* a, const ucontext_t* uc) {
  if (uc == nullptr || neverBlocks(nr)) return rawSyscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
  int64_t args[6] = {a[0], a[1], a[2], a[3], a[4], a[5]};
  uint64_t temp = 0;
  if (int64_t* m = tempMaskArg(nr, args); m != nullptr && *m != 0) {
    temp = *reinterpret_cast<const uint64_t*>(*m) & ~kSigsysBit;
    *m = reinterpret_cast<int64_t>(&temp);
  }
  struct {
    uint64_t* ss;
    uint64_t len;
  } pselectMask{};
  if (nr == SYS_pselect6 && args[5] != 0) {
    const auto* given = reinterpret_cast<const decltype(pselectMask)*>(args[5]);
    pselectMask = *given;
    if (pselectMask.ss != nullptr) {
      temp = *pselectMask.ss & ~kSigsysBit;
      pselectMask.ss = &temp;
    }
    args[5] = reinterpret_cast<int64_t>(&pselectMask);
  }
  uint64_t appMask = *reinterpret_cast<const uint64_t*>(&uc->uc_sigmask) & ~kSigsysBit, saved = 0;
  rawSyscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&appMask), reinterpret_cast<long>(&saved), 8);
  long r = rawSyscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]);
  rawSyscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&saved), 0, 8);
  return r;
}

// The *at form of the old path calls (glibc uses the *at forms, raw callers may not):
// the same call for the kernel, and only the *at forms are in the table.
void translateLegacy(TrappedCall& c) {
  int64_t* a = c.a;
  const int64_t cwd = AT_FDCWD;
  switch (c.nr) {
    case SYS_open: c = {SYS_openat, {cwd, a[0], a[1], a[2], 0, 0}}; break;
    case SYS_creat: c = {SYS_openat, {cwd, a[0], O_CREAT | O_WRONLY | O_TRUNC, a[1], 0, 0}}; break;
    case SYS_stat: c = {SYS_newfstatat, {cwd, a[0], a[1], 0, 0, 0}}; break;
    case SYS_lstat: c = {SYS_newfstatat, {cwd, a[0], a[1], AT_SYMLINK_NOFOLLOW, 0, 0}}; break;
    case SYS_fstat:
      c = {SYS_newfstatat, {a[0], reinterpret_cast<int64_t>(kEmptyPath), a[1], AT_EMPTY_PATH, 0, 0}};
      break;
    case SYS_access: c = {SYS_faccessat, {cwd, a[0], a[1], 0, 0, 0}}; break;
    case SYS_mkdir: c = {SYS_mkdirat, {cwd, a[0], a[1], 0, 0, 0}}; break;
    case SYS_unlink: c = {SYS_unlinkat, {cwd, a[0], 0, 0, 0, 0}}; break;
    case SYS_rmdir: c = {SYS_unlinkat, {cwd, a[0], AT_REMOVEDIR, 0, 0, 0}}; break;
    case SYS_rename: c = {SYS_renameat, {cwd, a[0], cwd, a[1], 0, 0}}; break;
    case SYS_readlink: c = {SYS_readlinkat, {cwd, a[0], a[1], a[2], 0, 0}}; break;
    case SYS_chmod: c = {SYS_fchmodat, {cwd, a[0], a[1], 0, 0, 0}}; break;
    default: break;
  }
}

enum class Where { Local, Home, Both };

// Whether a call the table can forward concerns home.
Where whereRowGoes(const State& s, const rsc::Row& row, const int64_t* a) {
  switch (row.id) {
    case CallId::Getcwd: return s.cwdLocal.load() ? Where::Local : Where::Home;
    case CallId::Getppid: return Where::Home;
    case CallId::Socket:  // the job's network identity is home's, unless moved otherwise
      return s.config.network == kNetworkHome && (a[0] == AF_INET || a[0] == AF_INET6) ? Where::Home : Where::Local;
    default: break;
  }
  bool home = false, local = false, paths = false;
  for (uint8_t i = 0; i < row.nargs; ++i) {
    if (row.args[i].kind != Arg::Path) continue;
    paths = true;
    const int64_t dirfd = i > 0 && row.args[i - 1].kind == Arg::Fd ? a[i - 1] : AT_FDCWD;
    (pathIsHome(s, fdArg(dirfd), reinterpret_cast<const char*>(a[i])) ? home : local) = true;
  }
  if (paths) return home && local ? Where::Both : home ? Where::Home : Where::Local;
  if (row.fdArg >= 0 && isForwardedFd(s, fdArg(a[row.fdArg]))) return Where::Home;
  return Where::Local;
}

// A write that failed with EPIPE at home: the kernel would have sent SIGPIPE to the
// writing thread, but it went to the deputy (which blocks it). Raise it here, where
// the application's disposition decides (die, handler, or ignored: just EPIPE).
long raiseSigpipeOnEpipe(long r) {
  if (r == -EPIPE) {
    shim::rawSyscall(SYS_tgkill, shim::rawSyscall(SYS_getpid), shim::rawSyscall(SYS_gettid), SIGPIPE);
  }
  return r;
}

bool anyForwarded(const State& s, int64_t a, int64_t b) {
  return isForwardedFd(s, fdArg(a)) || isForwardedFd(s, fdArg(b));
}

// A PID (as the kernel here knows it) that is not this process nor a child born
// here is a process at home: the job's parent, or a child it forked before leaving
// (now the deputy's).
bool isHomePid(pid_t pid) { return pid > 0 && pid != shim::realPid() && !isChildRealPid(pid); }

// The PID as the kernel here knows it: the process's and its children's virtual
// PIDs (also as process groups) are not the real ones. PIDs are 32-bit: the upper
// half of the register is not the caller's.
pid_t localPid(int64_t arg) {
  const pid_t pid = static_cast<pid_t>(arg);
  const shim::Runtime& rt = shim::g_runtime;
  if (pid == rt.vpid) return shim::realPid();
  if (pid_t real = childRealPid(pid); real != 0) return real;
  if (pid < -1 && -pid == rt.vpid) return -shim::realPid();
  return pid;
}

// A wait that reaped a child born here: its slot is free, its virtual PID is the result.
long reaped(long real, bool exited) {
  if (real <= 0) return real;
  pid_t vpid = childVirtualPid(static_cast<pid_t>(real));
  if (exited) forgetChild(static_cast<pid_t>(real));
  return vpid;
}

// kill, wait4 and waitid: towards processes at home they go home (the deputy is the
// parent of the children forked there); towards this process and the children born
// here they run here, in real PIDs. A wait for any child waits here while there are
// children born here, else at home.
long processCall(const rsc::Row& row, TrappedCall& c, const ucontext_t* uc) {
  int64_t* a = c.a;
  switch (row.id) {
    case CallId::Kill: {
      const pid_t target = localPid(a[0]);
      if (isHomePid(target)) return forwardRow(row, a);
      a[0] = target;
      return runWith(c.nr, a, uc);
    }
    case CallId::Wait4: {
      const pid_t target = localPid(a[0]);
      if (target > 0 ? isHomePid(target) : !haveChildren()) return forwardRow(row, a);
      a[0] = target;
      long r = runWith(c.nr, a, uc);
      const auto* status = reinterpret_cast<const int*>(a[1]);
      const bool exited = !(a[2] & (WUNTRACED | WCONTINUED)) ||
                          (status != nullptr && !WIFSTOPPED(*status) && !WIFCONTINUED(*status));
      return reaped(r, exited);
    }
    default: {  // waitid
      const int32_t type = static_cast<int32_t>(a[0]);
      if (type == P_PID ? isHomePid(localPid(a[1])) : (type != P_PIDFD && !haveChildren())) {
        return forwardRow(row, a);
      }
      if (type == P_PID) a[1] = localPid(a[1]);
      long r = runWith(c.nr, a, uc);
      auto* info = reinterpret_cast<siginfo_t*>(a[2]);
      if (r == 0 && info != nullptr && info->si_pid > 0) {
        const bool exited = !(a[3] & WNOWAIT) && (info->si_code == CLD_EXITED || info->si_code == CLD_KILLED ||
                                                  info->si_code == CLD_DUMPED);
        info->si_pid = static_cast<pid_t>(reaped(info->si_pid, exited));
      }
      return r;
    }
  }
}

// A call with forwarding active. The fd-table calls come first: they are mirrored
// whenever a home fd is involved, whatever the table says.
long route(TrappedCall& c, const ucontext_t* uc) {
  State& s = state();
  translateLegacy(c);
  if (long r = 0; shiftedClockCall(c, uc, r)) return r;  // the job's clocks (clock_shift.h)
  const int64_t* a = c.a;
  switch (c.nr) {
    case SYS_getppid:
      if (shim::g_runtime.restored) return shim::g_runtime.vppid;  // the home parent, known
      break;
    case SYS_close: return closeMirrored(c);
    case SYS_close_range: return closeRangeMirrored(c);
    case SYS_dup: case SYS_dup2: case SYS_dup3: return dupMirrored(c);
    case SYS_fcntl:
      if (a[1] == F_DUPFD || a[1] == F_DUPFD_CLOEXEC) return fcntlDupMirrored(c);
      // Close-on-exec belongs to this process's fd table, which the stand-in carries
      // (the restorer set it as it was); the deputy holds every home fd without it.
      if (a[1] == F_GETFD || a[1] == F_SETFD) return runWith(c.nr, c.a, uc);
      break;
    case SYS_readv: case SYS_writev: case SYS_preadv: case SYS_pwritev: case SYS_preadv2: case SYS_pwritev2:
      if (!isForwardedFd(s, fdArg(a[0]))) break;
      if (c.nr == SYS_readv && isStreamFd(s, fdArg(a[0]))) drainReadiness(fdArg(a[0]));
      return raiseSigpipeOnEpipe(forwardVectorIo(c));
    // In-kernel copies between fds cannot span hosts: the usual fallbacks of their
    // callers (plain reads and writes) can.
    case SYS_copy_file_range: if (anyForwarded(s, a[0], a[2])) return -EXDEV; break;
    case SYS_sendfile:
      // Both ends at home: the copy is made there (the row). One end here: the
      // caller's fallback (plain reads and writes) crosses hosts.
      if (isForwardedFd(s, fdArg(a[0])) && isForwardedFd(s, fdArg(a[1]))) break;
      if (anyForwarded(s, a[0], a[1])) return -EINVAL;
      break;
    case SYS_splice: case SYS_tee:
      if (anyForwarded(s, a[0], a[2])) return -EINVAL;
      break;
    case SYS_mmap:
      if (!(a[3] & MAP_ANONYMOUS) && isForwardedFd(s, fdArg(a[4]))) return -ENODEV;
      break;
    case SYS_sendmsg: case SYS_recvmsg: case SYS_sendmmsg: case SYS_recvmmsg:
      if (isForwardedFd(s, fdArg(a[0]))) return raiseSigpipeOnEpipe(forwardMessageCall(c));
      break;
    case SYS_execve: case SYS_execveat: return execWithHandoff(c, uc);
    case SYS_kill: case SYS_wait4: case SYS_waitid:
      if (const rsc::Row* row = rsc::findRow(c.nr, c.a)) return processCall(*row, c, uc);
      break;
    default: break;
  }
  if (const rsc::Row* row = rsc::findRow(c.nr, c.a)) {
    switch (whereRowGoes(s, *row, c.a)) {
      case Where::Both: return -EXDEV;  // e.g. rename between a home and a local path
      case Where::Local: break;
      case Where::Home: {
        int64_t home[6] = {a[0], a[1], a[2], a[3], a[4], a[5]};
        // Readiness the call is about to use up is told again after it, if it lasts.
        // (Only streams have readiness stand-ins: a file's read skips the syscall.)
        if (rsc::takesInput(row->id) && isStreamFd(s, fdArg(a[0]))) drainReadiness(fdArg(a[0]));
        toHomeFds(*row, home);
        if (row->id == CallId::Openat) return newFdForwarded(*row, home, a[2] & O_CLOEXEC);
        if (isHomeSocketRow(row->id)) return homeSocketRow(*row, home, c.a);
        long r = forwardRow(*row, home);
        if ((row->id == CallId::Chdir || row->id == CallId::Fchdir) && r == 0) s.cwdLocal.store(0);
        if (row->id == CallId::Write || row->id == CallId::Pwrite64) r = raiseSigpipeOnEpipe(r);
        // A non-blocking stream's writes must see EAGAIN: they are not pipelined.
        // (Children born here never pipeline.)
        if (r == 0 && !ownTable() && isStreamFd(s, fdArg(a[0]))) {
          if (row->id == CallId::FcntlSetfl) setPipelinedFd(s, fdArg(a[0]), !(a[2] & O_NONBLOCK));
          if (row->id == CallId::IoctlFionbio) setPipelinedFd(s, fdArg(a[0]), *reinterpret_cast<const int*>(a[2]) == 0);
        }
        return r;
      }
    }
  }
  long r = runWith(c.nr, c.a, uc);
  if ((c.nr == SYS_chdir || c.nr == SYS_fchdir) && r == 0) s.cwdLocal.store(1);
  return r;
}

long dispatch(TrappedCall& c, ucontext_t* uc) {
  switch (c.nr) {
    case SYS_rt_sigreturn:
      // A handler returned through a restorer outside the shim (one installed before
      // we could adopt it): do its rt_sigreturn from here, on its frame.
      mig_fwd_sigreturn_at(static_cast<uint64_t>(uc->uc_mcontext.gregs[REG_RSP]));
    case SYS_rt_sigprocmask: return emulateSigprocmask(c, uc);
    case SYS_rt_sigaction: return emulateSigaction(c);
    case SYS_clone: case SYS_clone3: case SYS_fork: case SYS_vfork: return runClone(c, uc);
    case SYS_exit: releaseThreadConnection(); break;
    default: break;
  }
  if (state().status.load(std::memory_order_acquire) != kActive) return runWith(c.nr, c.a, uc);
  return route(c, uc);
}

}  // namespace

long runLocally(const TrappedCall& c, const ucontext_t* uc) { return runWith(c.nr, c.a, uc); }

long runLocally(long nr, int64_t a0, int64_t a1, int64_t a2, int64_t a3, int64_t a4, int64_t a5) {
  return rawSyscall(nr, a0, a1, a2, a3, a4, a5);
}

void sigsysHandler(int sig, siginfo_t* info, void* context) {
  if (info->si_code != SYS_USER_DISPATCH) {
    deliverToApplication(sig, info, context);
    return;
  }
  auto* uc = static_cast<ucontext_t*>(context);
  greg_t* g = uc->uc_mcontext.gregs;
  TrappedCall c{info->si_syscall, {g[REG_RDI], g[REG_RSI], g[REG_RDX], g[REG_R10], g[REG_R8], g[REG_R9]}};
  long r = dispatch(c, uc);
  if (r == kRunNatively) {
    allowSyscalls();
    g[REG_RIP] -= 2;  // back onto the 2-byte syscall instruction; rax still holds its number
    return;
  }
  g[REG_RAX] = r;
}

}  // namespace mig::forward
