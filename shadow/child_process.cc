// See child_process.h.
#include "shadow/child_process.h"

#include "shadow/error.h"

#include <kj/debug.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::shadow {

pid_t spawnChild(const ChildSpec& spec) {
  kj::Vector<char*> argv;
  for (auto& a : spec.argv) argv.add(const_cast<char*>(a.cStr()));
  argv.add(nullptr);
  pid_t pid = fork();
  if (pid < 0) fail(kj::str("cannot start a process: ", strerror(errno)));
  if (pid == 0) {
    // The event loop blocks the signals it waits for; the child must not inherit that.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
    if (spec.ownSession) setsid();
    int null = open("/dev/null", O_RDWR);
    int fds[3] = {spec.stdinFd, spec.stdoutFd, spec.stderrFd};
    // Above the numbers they go to first, then into place (dup2 clears close-on-exec).
    int moved3 = spec.fd3 >= 0 ? fcntl(spec.fd3, F_DUPFD_CLOEXEC, 10) : -1;
    int moved4 = spec.fd4 >= 0 ? fcntl(spec.fd4, F_DUPFD_CLOEXEC, 10) : -1;
    for (int i = 0; i < 3; ++i) dup2(fds[i] >= 0 ? fds[i] : null, i);
    if (moved3 >= 0) dup2(moved3, 3);
    if (moved4 >= 0) dup2(moved4, 4);
    for (auto& e : spec.env) putenv(const_cast<char*>(e.cStr()));
    execv(argv[0], argv.begin());
    _exit(127);
  }
  return pid;
}

kj::Promise<int> childExit(kj::UnixEventPort& port, pid_t pid) {
  // onChildExit keeps a reference to the Maybe (it clears it once the child is
  // reaped): it must live as long as the promise.
  auto p = kj::heap<kj::Maybe<pid_t>>(pid);
  auto exited = port.onChildExit(*p);
  return exited.attach(kj::mv(p));
}

kj::String describeStatus(int status) {
  if (WIFEXITED(status)) return kj::str("exit status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return kj::str("killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  return kj::str("wait status ", status);
}

}  // namespace mig::shadow
