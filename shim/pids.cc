// PID virtualisation: the process keeps the PIDs and TIDs it had before a restore.
// getpid() is answered from memory (no system call). Signals it sends itself name it
// as the sender by that PID.
#include "shim/forward/child_pids.h"
#include "shim/forward/sud.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <csignal>
#include <cstring>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::shim {
namespace {

// The real TID now of the thread whose virtual TID is `vtid`, or `vtid` itself when
// it is not one of ours (not restored, or a thread born after the restore).
pid_t realTidOf(pid_t vtid) {
  Runtime& rt = g_runtime;
  if (!rt.restored) return vtid;
  const control::Block& b = rt.block;
  for (uint32_t i = 0; i < b.threadCount && i < control::kMaxThreads; ++i) {
    if (b.threads[i].vtid == vtid && b.threads[i].kernel.tidAddress != 0) {
      return *reinterpret_cast<const volatile pid_t*>(b.threads[i].kernel.tidAddress);
    }
  }
  return vtid;
}

pid_t realPidOf(pid_t vpid) {
  Runtime& rt = g_runtime;
  const bool virtualized = rt.restored || rt.bornAway;
  if (virtualized && vpid == rt.vpid) return realPid();
  if (virtualized && vpid == -rt.vpid) return -static_cast<pid_t>(rawSyscall(SYS_getpgid, 0));
  if (pid_t child = forward::childRealPid(vpid); child != 0) return child;
  return vpid;
}

// After a move the thread's system calls are dispatched: the SIGSYS handler takes
// the virtual PID, runs the call here in real PIDs or sends it home
// (sigsys_handler.cc, processCall). Translating here first would hand it a real PID
// of this host, which it would read as a virtual one: the job's own home PID is
// often some other process's real PID here (a child born here, killed as "itself").
bool dispatched() {
  return forward::t_sudOn && forward::t_selector == SYSCALL_DISPATCH_FILTER_BLOCK;
}

bool selfAfterRestore(pid_t pid) {
  return g_runtime.restored && pid == g_runtime.vpid;
}

// A signal the restored process sends itself, with itself named as the sender by the
// PID it knows (the kernel would name its new real PID): handlers and signalfd
// readers compare si_pid with getpid(). The kernel lets a process queue any si_code
// to itself.
int queueToSelf(int sig, int code, sigval value) {
  siginfo_t info;
  memset(&info, 0, sizeof(info));
  info.si_signo = sig;
  info.si_code = code;
  info.si_pid = g_runtime.vpid;
  info.si_uid = getuid();
  info.si_value = value;
  return static_cast<int>(syscall(SYS_rt_sigqueueinfo, realPid(), sig, &info));
}

// A wait that ran in the kernel, not dispatched (back home, with children born away
// that came home with their PIDs of the host they left, migctl/tree_restart.h): the
// child it reaped is named by its virtual PID, as away; once reaped its slot is free.
pid_t reapedChild(pid_t real, bool exited) {
  if (real <= 0) return real;
  const pid_t vpid = forward::childVirtualPid(real);
  if (exited && vpid != real) forward::forgetChild(real);
  return vpid;
}

bool endedForGood(int options, int status) {
  return !(options & (WUNTRACED | WCONTINUED)) || (!WIFSTOPPED(status) && !WIFCONTINUED(status));
}

// Whether this process's waits need the virtual PIDs of children born away translated
// here: it has such children and its calls are not dispatched (which translates them,
// sigsys_handler.cc).
bool translatesWaits() { return !dispatched() && forward::haveChildren(); }

}  // namespace
}  // namespace mig::shim

using namespace mig::shim;

extern "C" {

__attribute__((visibility("default"))) pid_t getpid(void) {
  pid_t v = g_runtime.vpid;
  return v != 0 ? v : realPid();  // before the constructor ran
}

__attribute__((visibility("default"))) pid_t gettid(void) {
  if (t_vtid == 0) t_vtid = realTid();
  return t_vtid;
}

__attribute__((visibility("default"))) pid_t getppid(void) {
  if (g_runtime.restored || g_runtime.bornAway) return g_runtime.vppid;
  return static_cast<pid_t>(rawSyscall(SYS_getppid));
}

__attribute__((visibility("default"))) int kill(pid_t pid, int sig) {
  if (sig > 0 && selfAfterRestore(pid)) return queueToSelf(sig, SI_USER, sigval{});
  return static_cast<int>(syscall(SYS_kill, dispatched() ? pid : realPidOf(pid), sig));
}

// glibc's sigqueue neither knows virtual PIDs (it would send to whatever process has
// the virtual PID's number now) nor names the sender by one.
__attribute__((visibility("default"))) int sigqueue(pid_t pid, int sig, const union sigval value) {
  if (sig > 0 && selfAfterRestore(pid)) return queueToSelf(sig, SI_QUEUE, value);
  siginfo_t info;
  memset(&info, 0, sizeof(info));
  info.si_signo = sig;
  info.si_code = SI_QUEUE;
  info.si_pid = realPid();
  info.si_uid = getuid();
  info.si_value = value;
  return static_cast<int>(syscall(SYS_rt_sigqueueinfo, realPidOf(pid), sig, &info));
}

__attribute__((visibility("default"))) int tgkill(pid_t tgid, pid_t tid, int sig) {
  return static_cast<int>(syscall(SYS_tgkill, realPidOf(tgid), realTidOf(tid), sig));
}

// Waits for children: glibc's wrappers make the system call themselves, so these are
// interposed for a process whose children born away came home with it (their virtual
// PIDs are not the kernel's here); any other process's waits go straight through.
__attribute__((visibility("default"))) pid_t wait4(pid_t pid, int* status, int options, struct rusage* usage) {
  if (!translatesWaits()) return static_cast<pid_t>(syscall(SYS_wait4, pid, status, options, usage));
  int own = 0;
  int* st = status != nullptr ? status : &own;
  const pid_t r = static_cast<pid_t>(syscall(SYS_wait4, realPidOf(pid), st, options, usage));
  return reapedChild(r, r > 0 && endedForGood(options, *st));
}

__attribute__((visibility("default"))) pid_t waitpid(pid_t pid, int* status, int options) {
  return wait4(pid, status, options, nullptr);
}

__attribute__((visibility("default"))) pid_t wait(int* status) { return wait4(-1, status, 0, nullptr); }

__attribute__((visibility("default"))) pid_t wait3(int* status, int options, struct rusage* usage) {
  return wait4(-1, status, options, usage);
}

__attribute__((visibility("default"))) int waitid(idtype_t type, id_t id, siginfo_t* info, int options) {
  if (!translatesWaits()) return static_cast<int>(syscall(SYS_waitid, type, id, info, options, nullptr));
  siginfo_t own;
  memset(&own, 0, sizeof(own));
  siginfo_t* in = info != nullptr ? info : &own;
  const id_t asked = type == P_PID ? static_cast<id_t>(realPidOf(static_cast<pid_t>(id))) : id;
  const int r = static_cast<int>(syscall(SYS_waitid, type, asked, in, options, nullptr));
  if (r == 0 && in->si_pid > 0) {
    const bool ended = !(options & WNOWAIT) &&
                       (in->si_code == CLD_EXITED || in->si_code == CLD_KILLED || in->si_code == CLD_DUMPED);
    in->si_pid = reapedChild(in->si_pid, ended);
  }
  return r;
}

}  // extern "C"
