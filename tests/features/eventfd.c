/* eventfd: eventfd counters that must survive a checkpoint exactly.
 * - acc (blocking, close-on-exec): step s adds s; every 4th step reads the
 *   sum back, so the counter is non-zero across most checkpoints.
 * - sem (EFD_SEMAPHORE, O_NONBLOCK, from 1000): each step takes 1; at the
 *   end exactly 1000 - STEPS reads of 1 remain, then EAGAIN.
 * - big (O_NONBLOCK), a counter above 2^32 (eventfd() itself takes only
 *   32 bits), read only at the end through a dup at fd >= 30.
 * - ping (blocking): a thread blocked in read() on it gets 1 per step from
 *   the main thread, so a checkpoint finds it in read().
 * At the end the flags (O_NONBLOCK, FD_CLOEXEC) must read back unchanged.
 *
 * usage: eventfd [STEPS]     (default 30 steps of 100 ms, at most 999)
 */
#include "feature.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>

enum { STEP_MS = 100, SEM_START = 1000 };
#define BIG 0x123456789abcULL

static int acc, sem, big, big_dup, ping, steps;
static int pings;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static uint64_t get(int fd, const char *what)
{
  uint64_t v;
  ssize_t r = read(fd, &v, sizeof v);
  CHECK(r == (ssize_t)sizeof v, "read(%s): %s", what, r < 0 ? strerror(errno) : "short");
  return v;
}

static void put(int fd, uint64_t v)
{
  CHECK(write(fd, &v, sizeof v) == (ssize_t)sizeof v, "write(eventfd %d): %s", fd, strerror(errno));
}

static void *pinged(void *arg)
{
  (void)arg;
  for (int s = 1; s <= steps; s++) {
    uint64_t v = get(ping, "ping");
    CHECK(v == 1, "step %d: ping read %llu, want 1", s, (unsigned long long)v);
    pthread_mutex_lock(&m);
    pings = s;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&m);
  }
  return NULL;
}

int main(int argc, char **argv)
{
  steps = argc > 1 ? parse_int(argv[1]) : 30;
  CHECK(steps < SEM_START, "at most %d steps", SEM_START - 1);
  CHECK_SYS(acc = eventfd(0, EFD_CLOEXEC));
  CHECK_SYS(sem = eventfd(SEM_START, EFD_SEMAPHORE | EFD_NONBLOCK));
  CHECK_SYS(big = eventfd(0, EFD_NONBLOCK));
  put(big, BIG);
  CHECK_SYS(big_dup = fcntl(big, F_DUPFD, 30));
  CHECK_SYS(ping = eventfd(0, 0));
  pthread_t t;
  CHECK(pthread_create(&t, NULL, pinged, NULL) == 0, "pthread_create");

  printf("eventfd: %d steps\n", steps);
  uint64_t want_acc = 0, sums = 0;
  for (int s = 1; s <= steps; s++) {
    put(acc, (uint64_t)s);
    want_acc += (uint64_t)s;
    if (s % 4 == 0) {
      uint64_t got = get(acc, "acc");
      CHECK(got == want_acc, "step %d: acc read %llu, want %llu", s, (unsigned long long)got,
            (unsigned long long)want_acc);
      sums = sums * 31 + got;
      want_acc = 0;
    }
    CHECK(get(sem, "sem") == 1, "step %d: a semaphore read gave more than 1", s);

    put(ping, 1);
    pthread_mutex_lock(&m);
    while (pings < s)
      pthread_cond_wait(&cv, &m);
    pthread_mutex_unlock(&m);
    feature_step(s);
    sleep_ms(STEP_MS);
  }
  CHECK(pthread_join(t, NULL) == 0, "pthread_join");

  uint64_t tail = want_acc > 0 ? get(acc, "acc") : 0;
  CHECK(tail == want_acc, "acc holds %llu at the end, want %llu", (unsigned long long)tail,
        (unsigned long long)want_acc);
  int left = 0;
  uint64_t v;
  while (read(sem, &v, sizeof v) == (ssize_t)sizeof v) {
    CHECK(v == 1, "a semaphore read gave %llu", (unsigned long long)v);
    left++;
  }
  CHECK(errno == EAGAIN, "semaphore read: %s, want EAGAIN", strerror(errno));
  CHECK(left == SEM_START - steps, "semaphore had %d left, want %d", left, SEM_START - steps);
  uint64_t b = get(big_dup, "big (dup)");
  CHECK(b == BIG, "big counter %#llx, want %#llx", (unsigned long long)b, BIG);
  CHECK(read(big, &v, sizeof v) < 0 && errno == EAGAIN, "big was not emptied through its dup");

  CHECK((fcntl(sem, F_GETFL) & O_NONBLOCK) && (fcntl(big, F_GETFL) & O_NONBLOCK) &&
        !(fcntl(acc, F_GETFL) & O_NONBLOCK) && !(fcntl(ping, F_GETFL) & O_NONBLOCK), "O_NONBLOCK changed");
  CHECK(fcntl(acc, F_GETFD) == FD_CLOEXEC && fcntl(sem, F_GETFD) == 0 && fcntl(big_dup, F_GETFD) == 0,
        "FD_CLOEXEC changed");
  printf("acc sums %016llx, %llu left at the end\n", (unsigned long long)sums, (unsigned long long)tail);
  printf("semaphore: %d reads of 1 left\n", left);
  printf("big counter %#llx through its dup\n", (unsigned long long)b);
  printf("ping read %d times in a blocked thread\n", pings);
  printf("PASS\n");
  return 0;
}
