/* signals: signal state that must survive a checkpoint exactly.
 * - SIGUSR1 has an SA_ONSTACK|SA_SIGINFO handler on an alternate signal
 *   stack; it is raised at every step and must run on that stack.
 * - SIGUSR2 and SIGRTMIN are blocked; one SIGUSR2 (kill) and two SIGRTMIN
 *   (sigqueue, values 11 and 22) are pending from the start. They are
 *   unblocked only at the end: the handlers must then see them once, twice,
 *   in order, with their siginfo (code, value, sender = getpid()).
 * - alarm(2) is armed at the start; the remaining time (getitimer) may only
 *   decrease and the alarm must fire exactly once, while the ~3 s of steps run.
 * - SIGHUP has a handler with a mask and SA_RESTART|SA_NODEFER, SIGTERM is
 *   ignored: both dispositions must read back unchanged.
 * - The signal mask must read back exactly (no signal of the checkpointer's
 *   may show through).
 *
 * usage: signals [STEPS]     (default 30 steps of 100 ms)
 */
#include "feature.h"

#include <signal.h>
#include <sys/time.h>

enum { STEP_MS = 100, ALT_SIZE = 64 * 1024 };

static char altstack[ALT_SIZE];
static volatile sig_atomic_t usr1_count, usr1_off_stack, alarm_count, usr2_count, rt_count;
static volatile int usr2_code, usr2_pid_ok, rt_values[4], rt_codes[4], rt_pid_ok;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
  (void)sig, (void)si, (void)uc;
  char here;
  if (&here < altstack || &here >= altstack + ALT_SIZE)
    usr1_off_stack++;
  usr1_count++;
}

static void on_alarm(int sig) { (void)sig; alarm_count++; }
static void on_hup(int sig) { (void)sig; }

static void on_usr2(int sig, siginfo_t *si, void *uc)
{
  (void)sig, (void)uc;
  usr2_code = si->si_code;
  usr2_pid_ok = si->si_pid == getpid();
  usr2_count++;
}

static void on_rt(int sig, siginfo_t *si, void *uc)
{
  (void)sig, (void)uc;
  if (rt_count < 4) {
    rt_values[rt_count] = si->si_value.sival_int;
    rt_codes[rt_count] = si->si_code;
  }
  rt_pid_ok += si->si_pid == getpid();
  rt_count++;
}

/* Compares the current mask with want over every signal number. */
static void check_mask(const sigset_t *want, const char *when)
{
  sigset_t cur;
  CHECK_SYS(sigprocmask(SIG_BLOCK, NULL, &cur));
  for (int s = 1; s <= SIGRTMAX; s++)
    if (s < 32 || s >= SIGRTMIN)
      CHECK(sigismember(&cur, s) == sigismember(want, s), "%s: signal %d is %s in the mask", when, s,
            sigismember(&cur, s) ? "set" : "not set");
}

static void check_pending(const char *when)
{
  sigset_t p;
  CHECK_SYS(sigpending(&p));
  CHECK(sigismember(&p, SIGUSR2) && sigismember(&p, SIGRTMIN), "%s: SIGUSR2/SIGRTMIN no longer pending", when);
  CHECK(!sigismember(&p, SIGUSR1) && !sigismember(&p, SIGALRM), "%s: unexpected pending signal", when);
}

int main(int argc, char **argv)
{
  int steps = argc > 1 ? parse_int(argv[1]) : 30;

  stack_t ss = { .ss_sp = altstack, .ss_size = ALT_SIZE, .ss_flags = 0 };
  CHECK_SYS(sigaltstack(&ss, NULL));
  feature_handle(SIGUSR1, on_usr1, SA_ONSTACK);
  feature_handle(SIGUSR2, on_usr2, 0);
  feature_handle(SIGRTMIN, on_rt, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  CHECK_SYS(sigaction(SIGALRM, &sa, NULL));
  sa.sa_handler = on_hup;
  sa.sa_flags = SA_RESTART | SA_NODEFER;
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGQUIT);
  CHECK_SYS(sigaction(SIGHUP, &sa, NULL));
  CHECK(signal(SIGTERM, SIG_IGN) != SIG_ERR, "signal(SIGTERM)");

  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGUSR2);
  sigaddset(&blocked, SIGRTMIN);
  CHECK_SYS(sigprocmask(SIG_BLOCK, &blocked, NULL));
  CHECK_SYS(kill(getpid(), SIGUSR2));
  CHECK_SYS(sigqueue(getpid(), SIGRTMIN, (union sigval){ .sival_int = 11 }));
  CHECK_SYS(sigqueue(getpid(), SIGRTMIN, (union sigval){ .sival_int = 22 }));
  check_pending("start");
  alarm(2);

  printf("signals: %d steps\n", steps);
  long prev_left = 2000000;
  for (int s = 1; s <= steps; s++) {
    CHECK_SYS(raise(SIGUSR1));
    CHECK(usr1_count == s, "step %d: SIGUSR1 handler ran %d times", s, (int)usr1_count);
    check_mask(&blocked, "step");
    check_pending("step");
    struct itimerval it;
    CHECK_SYS(getitimer(ITIMER_REAL, &it));
    long left = it.it_value.tv_sec * 1000000L + it.it_value.tv_usec;
    if (alarm_count == 0) {
      CHECK(left > 0 && left <= prev_left, "step %d: alarm has %ld us left, %ld before", s, left, prev_left);
      prev_left = left;
    } else {
      CHECK(left == 0, "step %d: alarm re-armed (%ld us) after it fired", s, left);
    }
    feature_step(s);
    sleep_ms_restarting(STEP_MS);
  }
  CHECK(alarm_count == 1, "alarm fired %d times", (int)alarm_count);
  CHECK(usr1_off_stack == 0, "SIGUSR1 handler ran off the alternate stack %d times", (int)usr1_off_stack);
  stack_t cur;
  CHECK_SYS(sigaltstack(NULL, &cur));
  CHECK(cur.ss_sp == altstack && cur.ss_size == ALT_SIZE && cur.ss_flags == 0, "sigaltstack changed");

  CHECK_SYS(sigaction(SIGHUP, NULL, &sa));
  CHECK(sa.sa_handler == on_hup, "SIGHUP handler changed");
  CHECK((sa.sa_flags & (SA_RESTART | SA_NODEFER | SA_SIGINFO | SA_ONSTACK)) == (SA_RESTART | SA_NODEFER),
        "SIGHUP flags changed: %#x", sa.sa_flags);
  CHECK(sigismember(&sa.sa_mask, SIGINT) && sigismember(&sa.sa_mask, SIGQUIT) && !sigismember(&sa.sa_mask, SIGUSR1),
        "SIGHUP handler mask changed");
  CHECK_SYS(sigaction(SIGTERM, NULL, &sa));
  CHECK(sa.sa_handler == SIG_IGN, "SIGTERM is no longer ignored");
  CHECK_SYS(sigaction(SIGUSR1, NULL, &sa));
  CHECK((sa.sa_flags & SA_ONSTACK) && sa.sa_sigaction == on_usr1, "SIGUSR1 disposition changed");

  CHECK_SYS(sigprocmask(SIG_UNBLOCK, &blocked, NULL));
  CHECK(usr2_count == 1, "SIGUSR2 delivered %d times", (int)usr2_count);
  CHECK(usr2_code == SI_USER, "SIGUSR2 si_code %d, want SI_USER", usr2_code);
  CHECK(usr2_pid_ok, "SIGUSR2 si_pid is not getpid()");
  CHECK(rt_count == 2, "SIGRTMIN delivered %d times", (int)rt_count);
  CHECK(rt_codes[0] == SI_QUEUE && rt_codes[1] == SI_QUEUE, "SIGRTMIN si_code %d %d", rt_codes[0], rt_codes[1]);
  CHECK(rt_pid_ok == 2, "SIGRTMIN si_pid is not getpid()");
  printf("SIGUSR1 handled %d times on the alternate stack\n", (int)usr1_count);
  printf("alarm fired once\n");
  printf("pending SIGUSR2 delivered once\n");
  printf("queued SIGRTMIN values %d %d\n", rt_values[0], rt_values[1]);
  printf("dispositions unchanged\n");
  printf("PASS\n");
  return 0;
}
