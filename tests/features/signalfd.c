/* signalfd: signals taken through signalfds across a checkpoint.
 * - SIGUSR1, SIGUSR2 and SIGRTMIN..SIGRTMIN+2 are blocked in every thread.
 * - early (SFD_NONBLOCK | SFD_CLOEXEC) takes SIGUSR1 and SIGRTMIN: one
 *   SIGUSR1 (kill) and two SIGRTMIN (sigqueue, values 11 and 22) are sent at
 *   the start and read only at the end, after any checkpoint: in order, with
 *   their siginfo (code, value, sender = getpid(), uid), then EAGAIN.
 * - live (blocking) takes SIGUSR2, SIGRTMIN+1 and SIGRTMIN+2: a thread
 *   blocked in read() on it gets, at step s, a SIGRTMIN+1 queued to it with
 *   value s (pthread_sigqueue), every 3rd step a SIGUSR2 from kill(getpid())
 *   and every 5th a SIGRTMIN+2 from sigqueue(getpid(), value s): signals sent
 *   before and after a checkpoint, each read once with its code, value, uid
 *   and, for kill and sigqueue, sender = getpid(). (pthread_sigqueue names
 *   the sender by glibc's own getpid, the kernel's PID: not checked.)
 * - The masks of both (sigmask in /proc/self/fdinfo) are printed at the end.
 *
 * usage: signalfd [STEPS]     (default 30 steps of 100 ms)
 */
#include "feature.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>

enum { STEP_MS = 100 };

static int early, live, steps;
static int rt_seen, usr2_seen, rt2_seen;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void read_one(int fd, struct signalfd_siginfo *si)
{
  ssize_t r = read(fd, si, sizeof *si);
  CHECK(r == (ssize_t)sizeof *si, "read(signalfd %d): %s", fd, r < 0 ? strerror(errno) : "short");
  CHECK(si->ssi_uid == getuid(), "signal %u from uid %u", si->ssi_signo, si->ssi_uid);
}

static void *reader(void *arg)
{
  (void)arg;
  while (rt_seen < steps || usr2_seen < steps / 3 || rt2_seen < steps / 5) {
    struct signalfd_siginfo si;
    read_one(live, &si);
    pthread_mutex_lock(&m);
    if (si.ssi_signo == SIGUSR2) {
      CHECK(si.ssi_code == SI_USER, "SIGUSR2 code %d", si.ssi_code);
      CHECK(si.ssi_pid == (uint32_t)getpid(), "SIGUSR2 sender %u, want getpid() %d", si.ssi_pid, getpid());
      usr2_seen++;
    } else if (si.ssi_signo == (uint32_t)SIGRTMIN + 2) {
      CHECK(si.ssi_code == SI_QUEUE && si.ssi_int == 5 * (rt2_seen + 1), "SIGRTMIN+2 code %d value %d, want %d",
            si.ssi_code, si.ssi_int, 5 * (rt2_seen + 1));
      CHECK(si.ssi_pid == (uint32_t)getpid(), "SIGRTMIN+2 sender %u, want getpid() %d", si.ssi_pid, getpid());
      rt2_seen++;
    } else {
      CHECK(si.ssi_signo == (uint32_t)SIGRTMIN + 1, "live read signal %u", si.ssi_signo);
      CHECK(si.ssi_code == SI_QUEUE && si.ssi_int == rt_seen + 1, "SIGRTMIN+1 code %d value %d, want value %d",
            si.ssi_code, si.ssi_int, rt_seen + 1);
      rt_seen++;
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&m);
  }
  return NULL;
}

static void print_mask(const char *name, int fd)
{
  char path[64], buf[256], mask[32] = "?";
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL, "open %s: %s", path, strerror(errno));
  while (fgets(buf, sizeof buf, f))
    sscanf(buf, "sigmask: %31s", mask);
  fclose(f);
  printf("%s: sigmask %s\n", name, mask);
}

int main(int argc, char **argv)
{
  steps = argc > 1 ? parse_int(argv[1]) : 30;
  sigset_t blocked, e, l;
  sigemptyset(&blocked);
  sigemptyset(&e);
  sigemptyset(&l);
  sigaddset(&e, SIGUSR1);
  sigaddset(&e, SIGRTMIN);
  sigaddset(&l, SIGUSR2);
  sigaddset(&l, SIGRTMIN + 1);
  sigaddset(&l, SIGRTMIN + 2);
  sigorset(&blocked, &e, &l);
  CHECK_SYS(sigprocmask(SIG_BLOCK, &blocked, NULL));
  CHECK_SYS(early = signalfd(-1, &e, SFD_NONBLOCK | SFD_CLOEXEC));
  CHECK_SYS(live = signalfd(-1, &l, 0));

  CHECK_SYS(kill(getpid(), SIGUSR1));
  CHECK_SYS(sigqueue(getpid(), SIGRTMIN, (union sigval){ .sival_int = 11 }));
  CHECK_SYS(sigqueue(getpid(), SIGRTMIN, (union sigval){ .sival_int = 22 }));

  pthread_t t;
  CHECK(pthread_create(&t, NULL, reader, NULL) == 0, "pthread_create");
  printf("signalfd: %d steps\n", steps);
  for (int s = 1; s <= steps; s++) {
    if (s % 3 == 0)
      CHECK_SYS(kill(getpid(), SIGUSR2));
    if (s % 5 == 0)
      CHECK_SYS(sigqueue(getpid(), SIGRTMIN + 2, (union sigval){ .sival_int = s }));
    int e2 = pthread_sigqueue(t, SIGRTMIN + 1, (union sigval){ .sival_int = s });
    CHECK(e2 == 0, "pthread_sigqueue: %s", strerror(e2));
    pthread_mutex_lock(&m);
    while (rt_seen < s || usr2_seen < s / 3 || rt2_seen < s / 5)
      pthread_cond_wait(&cv, &m);
    pthread_mutex_unlock(&m);
    feature_step(s);
    sleep_ms(STEP_MS);
  }
  CHECK(pthread_join(t, NULL) == 0, "pthread_join");

  struct signalfd_siginfo si;
  read_one(early, &si);
  CHECK(si.ssi_signo == SIGUSR1 && si.ssi_code == SI_USER, "first early signal %u code %d, want SIGUSR1 SI_USER",
        si.ssi_signo, si.ssi_code);
  CHECK(si.ssi_pid == (uint32_t)getpid(), "SIGUSR1 sender %u, want getpid() %d", si.ssi_pid, getpid());
  int values[2];
  for (int i = 0; i < 2; i++) {
    read_one(early, &si);
    CHECK(si.ssi_signo == (uint32_t)SIGRTMIN && si.ssi_code == SI_QUEUE, "early signal %u code %d, want SIGRTMIN",
          si.ssi_signo, si.ssi_code);
    CHECK(si.ssi_pid == (uint32_t)getpid(), "SIGRTMIN sender %u, want getpid() %d", si.ssi_pid, getpid());
    values[i] = si.ssi_int;
  }
  CHECK(read(early, &si, sizeof si) < 0 && errno == EAGAIN, "early had more signals");
  sigset_t pending;
  CHECK_SYS(sigpending(&pending));
  CHECK(!sigismember(&pending, SIGUSR1) && !sigismember(&pending, SIGUSR2) && !sigismember(&pending, SIGRTMIN) &&
        !sigismember(&pending, SIGRTMIN + 1), "a signal is still pending");
  CHECK((fcntl(early, F_GETFL) & O_NONBLOCK) && !(fcntl(live, F_GETFL) & O_NONBLOCK), "O_NONBLOCK changed");
  CHECK(fcntl(early, F_GETFD) == FD_CLOEXEC && fcntl(live, F_GETFD) == 0, "FD_CLOEXEC changed");

  print_mask("early", early);
  print_mask("live", live);
  printf("early: SIGUSR1 from getpid(), SIGRTMIN values %d %d\n", values[0], values[1]);
  printf("live: %d SIGRTMIN+1 and %d SIGRTMIN+2 in order, %d SIGUSR2\n", rt_seen, rt2_seen, usr2_seen);
  printf("PASS\n");
  return 0;
}
