// host_init: PID 1 of one simulated host made by tests/harness/mig-hosts.
//
// A PID namespace needs an init: it inherits every orphan of the namespace
// and must reap it, and its death kills everything else in the namespace.
// This one does nothing more:
//   - prints one line "ready <hostname>" on stdout once it is in charge
//     (mig-hosts waits for it), then points stdout at /dev/null;
//   - reaps every child that exits;
//   - exits with status 0 on SIGTERM or SIGINT, which makes the kernel kill
//     every other process of the host (SIGKILL works too, from outside).
// It refuses to run unless it is PID 1.

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>

namespace {

void on_signal(int) {}  // never runs: the signals stay blocked; see main()

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) {
    std::fprintf(stderr, "usage: %s   (run by mig-hosts as PID 1 of a host)\n", argv[0]);
    return 2;
  }
  if (getpid() != 1) {
    std::fprintf(stderr, "host_init: must run as PID 1 of a new PID namespace\n");
    return 2;
  }

  // The kernel delivers a signal to a namespace's init only if init handles
  // it or has it blocked; we do both and take them with sigwaitinfo().
  sigset_t wanted;
  sigemptyset(&wanted);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT}) sigaddset(&wanted, sig);
  if (sigprocmask(SIG_BLOCK, &wanted, nullptr) != 0) {
    std::perror("host_init: sigprocmask");
    return 1;
  }
  struct sigaction sa = {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT}) sigaction(sig, &sa, nullptr);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);

  if (chdir("/") != 0) std::perror("host_init: chdir /");

  char host[HOST_NAME_MAX + 1] = {};
  if (gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "?");
  char line[sizeof host + 16];
  int n = std::snprintf(line, sizeof line, "ready %s\n", host);
  if (write(STDOUT_FILENO, line, static_cast<size_t>(n)) != n) {
    std::perror("host_init: write ready line");
    return 1;
  }
  int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (devnull >= 0) {
    dup2(devnull, STDOUT_FILENO);  // nothing else ever goes to stdout
    close(devnull);
  }

  for (;;) {
    siginfo_t info;
    int sig = sigwaitinfo(&wanted, &info);
    if (sig < 0) {
      if (errno == EINTR) continue;
      std::perror("host_init: sigwaitinfo");
      return 1;
    }
    if (sig == SIGCHLD) {
      // One SIGCHLD may stand for several exits: reap until none is left.
      while (waitpid(-1, nullptr, WNOHANG) > 0) {
      }
      continue;
    }
    return 0;  // SIGTERM or SIGINT: our exit takes the whole host down
  }
}
