/* sigjob: a job that waits for SIGTERM or SIGINT, for the signal-forwarding
 * checks of signals.sh: a signal sent to the job's PID at home (or
 * Ctrl-C on its terminal at home) must run this program's handler wherever it
 * runs now.
 *
 * Prints "sigjob: pid P" at the start, then "tick N" and "STEP N" every
 * 100 ms. The handlers (sigaction, no SA_RESTART) print one line with write()
 * from inside the handler, "handler: SIGTERM, pid P" or "handler: SIGINT,
 * pid P", and end the process with _exit: status 42 for SIGTERM, 43 for
 * SIGINT. If no signal comes within STEPS steps: "no signal" and status 1.
 * With SIZE (like 256M), the job first fills that much memory, so that its
 * migration takes long enough to send it a signal while it is in flight.
 *
 * With --all (the "every signal" check of signals.sh): SA_SIGINFO handlers for
 * HUP, INT, QUIT, USR1, USR2, PIPE, ALRM, TERM, WINCH, URG and SIGRTMIN..+4, each
 * printing one line "signal N code C value V" (si_signo, si_code, si_value.sival_int)
 * and going on; TSTP, TTIN, TTOU and CONT keep their default actions (so the job
 * stops and continues). After STEPS ticks "done", status 0.
 *
 * usage: sigjob STEPS [SIZE] | sigjob --all STEPS
 */
#include "feature.h"

#include <signal.h>
#include <sys/mman.h>

enum { STEP_MS = 100, TERM_STATUS = 42, INT_STATUS = 43 };

static void on_signal(int sig)
{
  char msg[80];
  int n = snprintf(msg, sizeof msg, "handler: %s, pid %d\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                   (int)getpid());
  ssize_t w = write(STDOUT_FILENO, msg, (size_t)n);
  (void)w;
  _exit(sig == SIGTERM ? TERM_STATUS : INT_STATUS);
}

static void on_any(int sig, siginfo_t *si, void *uc)
{
  (void)uc;
  char msg[96];
  int n = snprintf(msg, sizeof msg, "signal %d code %d value %d\n", sig, si->si_code, si->si_value.sival_int);
  ssize_t w = write(STDOUT_FILENO, msg, (size_t)n);
  (void)w;
}

static int every_signal(int steps)
{
  int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGWINCH, SIGURG};
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_any;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    CHECK_SYS(sigaction(sigs[i], &sa, NULL));
  for (int rt = SIGRTMIN; rt <= SIGRTMIN + 4; rt++)
    CHECK_SYS(sigaction(rt, &sa, NULL));
  printf("sigjob: pid %d\n", (int)getpid());
  for (int s = 1; s <= steps; s++) {
    printf("tick %d\n", s);
    feature_step(s);
    sleep_ms_restarting(STEP_MS);
  }
  printf("done\n");
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv)
{
  if (argc == 3 && strcmp(argv[1], "--all") == 0)
    return every_signal(parse_int(argv[2]));
  CHECK(argc == 2 || argc == 3, "usage: sigjob STEPS [SIZE] | sigjob --all STEPS");
  int steps = parse_int(argv[1]);
  if (argc == 3) {
    size_t size = (size_t)parse_size(argv[2]);
    uint64_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(mem != MAP_FAILED, "mmap %zu bytes: %s", size, strerror(errno));
    for (size_t i = 0; i < size / 8; i++)
      mem[i] = mix64(i);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  CHECK_SYS(sigaction(SIGTERM, &sa, NULL));
  CHECK_SYS(sigaction(SIGINT, &sa, NULL));

  printf("sigjob: pid %d\n", (int)getpid());
  for (int s = 1; s <= steps; s++) {
    printf("tick %d\n", s);
    feature_step(s);
    sleep_ms_restarting(STEP_MS);
  }
  printf("no signal\n");
  fflush(stdout);
  return 1;
}
