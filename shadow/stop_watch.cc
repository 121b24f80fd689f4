// See stop_watch.h.
#include "shadow/stop_watch.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

// deputy/signals.h kStopWatchThread (the deputy's binary is not linked here).
constexpr const char* kThreadName = "mig-stopwatch";

// The thread of `pid` named kThreadName, or 0.
pid_t findThread(pid_t pid) {
  char dir[64];
  snprintf(dir, sizeof(dir), "/proc/%d/task", pid);
  DIR* d = opendir(dir);
  if (d == nullptr) return 0;
  pid_t found = 0;
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char path[384], comm[32] = {};
    snprintf(path, sizeof(path), "%s/%s/comm", dir, e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, comm, sizeof(comm) - 1);
    close(fd);
    if (n > 0 && comm[n - 1] == '\n') comm[n - 1] = '\0';
    if (strcmp(comm, kThreadName) == 0) {
      found = atoi(e->d_name);
      break;
    }
  }
  closedir(d);
  return found;
}

// The number after `key` in /proc file `path`, or 0.
pid_t procField(const char* path, const char* key) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* at = strstr(buf, key);
  return at != nullptr ? static_cast<pid_t>(atoi(at + strlen(key))) : 0;
}

bool stopSignal(int sig) { return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU; }

// The helper, after fork: system calls only (the parent has threads).
[[noreturn]] void traceStops(pid_t tid, int out) {
  if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) {
    const char failed[2] = {'F', static_cast<char>(errno)};
    (void)!write(out, failed, 2);
    _exit(1);
  }
  if (write(out, "A", 1) != 1) _exit(1);
  for (;;) {
    int status;
    if (waitpid(tid, &status, __WALL) < 0) {
      if (errno == EINTR) continue;
      _exit(0);
    }
    if (!WIFSTOPPED(status)) _exit(0);  // the thread is gone: the deputy ended or exec'd
    const int sig = WSTOPSIG(status), event = status >> 16;
    if (event == PTRACE_EVENT_STOP && stopSignal(sig)) {
      // The process is stopped: it stays so, as it would untraced, until a SIGCONT.
      ptrace(PTRACE_LISTEN, tid, 0, 0);
      if (write(out, "S", 1) != 1) _exit(0);
    } else if (event == PTRACE_EVENT_STOP) {
      ptrace(PTRACE_CONT, tid, 0, 0);  // continued (SIGCONT ends the listening stop)
      if (write(out, "C", 1) != 1) _exit(0);
    } else {
      ptrace(PTRACE_CONT, tid, 0, sig);  // a signal for the thread itself: delivered as sent
    }
  }
}

}  // namespace

kj::String stopWatchRefused(pid_t deputyPid, int error) {
  return kj::str("cannot trace the ", kThreadName, " thread of deputy PID ", deputyPid, ": ", strerror(error));
}

bool stopWatchRunning(pid_t deputyPid) {
  const pid_t tid = findThread(deputyPid);
  if (tid == 0) return false;
  char path[96];
  snprintf(path, sizeof(path), "/proc/%d/task/%d/status", deputyPid, tid);
  const pid_t tracer = procField(path, "\nTracerPid:");
  if (tracer == 0) return false;
  snprintf(path, sizeof(path), "/proc/%d/status", tracer);
  return procField(path, "\nPPid:") == getpid();
}

kj::Maybe<StopWatch> startStopWatch(kj::LowLevelAsyncIoProvider& io, pid_t deputyPid, kj::String& why) {
  const pid_t tid = findThread(deputyPid);
  if (tid == 0) {
    why = kj::str("deputy PID ", deputyPid, " has no ", kThreadName, " thread");
    return nullptr;
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    why = kj::str("pipe: ", strerror(errno));
    return nullptr;
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    why = kj::str("fork: ", strerror(errno));
    close(fds[0]);
    close(fds[1]);
    return nullptr;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) _exit(0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);  // SIGPIPE ends it with shadowd's end of the pipe
    const int null = open("/dev/null", O_RDWR);  // shadowd's log or terminal is not the helper's
    if (null < 0 || dup2(null, 0) != 0 || dup2(null, 1) != 1 || dup2(null, 2) != 2) _exit(1);
    if (dup2(fds[1], 3) != 3) _exit(1);
    syscall(SYS_close_range, 4, ~0u, 0);  // shadowd's sockets and files are not the helper's
    traceStops(tid, 3);
  }
  close(fds[1]);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  return StopWatch{pid, io.wrapInputFd(fds[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                                                   kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                                                   kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK)};
}

}  // namespace mig::shadow
