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

}  // extern "C"
