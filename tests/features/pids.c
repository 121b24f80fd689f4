/* pids: process and thread identity. getpid, getppid and gettid (of the main
 * thread and of a second thread) must return, at every step and at the end,
 * what they returned at the start; kill(getpid(), SIGUSR1) and
 * tgkill(getpid(), gettid(), SIGUSR2) must reach this process's handlers, and
 * pthread_kill(SIGWINCH) the second thread's. At the end, with SIGTERM back
 * to its default action, kill(getpid(), SIGTERM) ends the process: the exit
 * status seen by the parent is "killed by SIGTERM" (143 in a shell).
 *
 * usage: pids [STEPS]   (default 30 steps of 100 ms)
 */
#include "feature.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>

enum { STEP_MS = 100 };

static pid_t pid0, ppid0, tid0, ttid0;
static volatile sig_atomic_t usr1, usr2;
static volatile sig_atomic_t usr1_wrong_thread, usr2_wrong_thread;
static atomic_int winch, thread_checks, stop;

static void on_usr1(int sig) { (void)sig; usr1++; if (gettid() != tid0) usr1_wrong_thread++; }
static void on_usr2(int sig) { (void)sig; usr2++; if (gettid() != tid0) usr2_wrong_thread++; }
static void on_winch(int sig) { (void)sig; atomic_fetch_add(&winch, 1); }

static void *second(void *arg)
{
  (void)arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &set, NULL);  /* process-directed signals go to main */
  ttid0 = gettid();
  atomic_fetch_add(&thread_checks, 1);
  while (!atomic_load(&stop)) {
    CHECK(gettid() == ttid0, "second thread: gettid changed");
    CHECK(getpid() == pid0, "second thread: getpid changed");
    atomic_fetch_add(&thread_checks, 1);
    sleep_ms_restarting(20);
  }
  return NULL;
}

int main(int argc, char **argv)
{
  int steps = argc > 1 ? parse_int(argv[1]) : 30;
  pid0 = getpid(), ppid0 = getppid(), tid0 = gettid();
  CHECK(tid0 == pid0, "main thread's tid %d is not the pid %d", tid0, pid0);
  signal(SIGUSR1, on_usr1);
  signal(SIGUSR2, on_usr2);
  signal(SIGWINCH, on_winch);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, second, NULL) == 0, "pthread_create");
  while (atomic_load(&thread_checks) == 0)
    sleep_ms_restarting(1);
  CHECK(ttid0 != tid0 && ttid0 > 0, "second thread's tid");

  printf("pids: %d steps\n", steps);
  for (int s = 1; s <= steps; s++) {
    CHECK(getpid() == pid0, "step %d: getpid %d, was %d", s, getpid(), pid0);
    CHECK(getppid() == ppid0, "step %d: getppid %d, was %d", s, getppid(), ppid0);
    CHECK(gettid() == tid0, "step %d: gettid %d, was %d", s, gettid(), tid0);
    CHECK_SYS(kill(getpid(), SIGUSR1));
    CHECK(usr1 == s, "step %d: kill(getpid(), SIGUSR1) ran the handler %d times", s, (int)usr1);
    CHECK_SYS(tgkill(getpid(), gettid(), SIGUSR2));
    CHECK(usr2 == s, "step %d: tgkill(getpid(), gettid(), SIGUSR2) ran the handler %d times", s, (int)usr2);
    int e = pthread_kill(t, SIGWINCH);
    CHECK(e == 0, "step %d: pthread_kill: %s", s, strerror(e));
    feature_step(s);
    sleep_ms_restarting(STEP_MS);
  }
  int64_t deadline = mono_ns() + 10000000000LL;
  while (atomic_load(&winch) < steps && mono_ns() < deadline)
    sleep_ms_restarting(1);
  CHECK(atomic_load(&winch) == steps, "the second thread got %d SIGWINCH, want %d", atomic_load(&winch), steps);
  atomic_store(&stop, 1);
  CHECK(pthread_join(t, NULL) == 0, "pthread_join");
  CHECK(usr1_wrong_thread == 0 && usr2_wrong_thread == 0, "a handler ran in the wrong thread");
  CHECK(getpid() == pid0 && getppid() == ppid0 && gettid() == tid0, "identity changed at the end");

  printf("pid unchanged\nppid unchanged\ntid unchanged\nthread tid unchanged\n");
  printf("SIGUSR1 %d SIGUSR2 %d SIGWINCH %d\n", (int)usr1, (int)usr2, atomic_load(&winch));
  printf("PASS\n");
  fflush(stdout);
  signal(SIGTERM, SIG_DFL);
  kill(getpid(), SIGTERM);
  feature_fail("still alive after kill(getpid(), SIGTERM)");
}
