/* timerfd: timers that keep their state across a checkpoint.
 * - tick: CLOCK_MONOTONIC, every 100 ms. Step s ends once s expirations have
 *   been read (read() blocks; it returns several at once when they piled up).
 *   Around STEP s with s % 5 == 4 the program pauses without reading (250 ms
 *   before printing it, 150 ms after), so a checkpoint at that step finds two
 *   expirations not yet read, which must still be read after the restart.
 * - once: CLOCK_MONOTONIC, one-shot at 2.05 s, O_NONBLOCK. Until it fires its
 *   time left (timerfd_gettime) may only go down; it must fire exactly once,
 *   and not before tick's 20th expiration: both timers stand still while the
 *   process is checkpointed, so whenever it is seen fired, every tick that is
 *   due is read and at least 20 must have come. A restore that fired it at
 *   once, lost its time or lost unread ticks fails here, whatever the load.
 * - wall: CLOCK_REALTIME, absolute (TFD_TIMER_ABSTIME), 2.5 s after the
 *   start: a date, so it fires exactly once and never before that date by
 *   CLOCK_REALTIME (a checkpoint does not move it).
 * - idle: CLOCK_BOOTTIME, disarmed, with a 7 ms interval: stays so.
 * At the end each timer's clock and settime flags (/proc/self/fdinfo) and
 * interval are printed.
 *
 * usage: timerfd [STEPS]     (default 30, at least 30 so both one-shots fire)
 */
#include "feature.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/timerfd.h>

enum { STEP_MS = 100, ONCE_MS = 2050, WALL_MS = 2500, IDLE_INTERVAL_MS = 7 };

static int64_t ts_ns(struct timespec t) { return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec; }
static struct timespec ns_ts(int64_t ns) { return (struct timespec){ ns / 1000000000LL, ns % 1000000000LL }; }

static int64_t now_ns(clockid_t c)
{
  struct timespec t;
  CHECK_SYS(clock_gettime(c, &t));
  return ts_ns(t);
}

static int make_timer(clockid_t clock, int flags, int settime_flags, int64_t value_ns, int64_t interval_ns)
{
  int fd;
  CHECK_SYS(fd = timerfd_create(clock, flags));
  struct itimerspec its = { ns_ts(interval_ns), ns_ts(value_ns) };
  CHECK_SYS(timerfd_settime(fd, settime_flags, &its, NULL));
  return fd;
}

/* Expirations ready on fd without blocking (0 if none). */
static uint64_t take(int fd)
{
  struct pollfd p = { fd, POLLIN, 0 };
  int r = poll(&p, 1, 0);
  CHECK(r >= 0, "poll: %s", strerror(errno));
  if (r == 0)
    return 0;
  uint64_t n;
  CHECK(read(fd, &n, sizeof n) == (ssize_t)sizeof n, "read(timerfd %d): %s", fd, strerror(errno));
  CHECK(n > 0, "a timerfd read returned 0 expirations");
  return n;
}

static void print_timer(const char *name, int fd)
{
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL, "open %s: %s", path, strerror(errno));
  int clockid = -1;
  unsigned flags = 99;
  while (fgets(buf, sizeof buf, f)) {
    sscanf(buf, "clockid: %d", &clockid);
    sscanf(buf, "settime flags: %o", &flags);
  }
  fclose(f);
  struct itimerspec cur;
  CHECK_SYS(timerfd_gettime(fd, &cur));
  printf("%s: clockid %d, settime flags %02o, interval %lld ns\n", name, clockid, flags,
         (long long)ts_ns(cur.it_interval));
}

int main(int argc, char **argv)
{
  int steps = argc > 1 ? parse_int(argv[1]) : 30;
  CHECK(steps >= 30, "at least 30 steps");
  int tick = make_timer(CLOCK_MONOTONIC, 0, 0, STEP_MS * 1000000LL, STEP_MS * 1000000LL);
  int once = make_timer(CLOCK_MONOTONIC, TFD_NONBLOCK, 0, ONCE_MS * 1000000LL, 0);
  int64_t wall_at = now_ns(CLOCK_REALTIME) + WALL_MS * 1000000LL;
  int wall = make_timer(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC, TFD_TIMER_ABSTIME, wall_at, 0);
  int idle = make_timer(CLOCK_BOOTTIME, TFD_NONBLOCK, 0, 0, IDLE_INTERVAL_MS * 1000000LL);

  printf("timerfd: %d steps\n", steps);
  uint64_t ticks = 0, once_fired = 0, wall_fired = 0;
  int64_t once_left = ONCE_MS * 1000000LL;
  for (int s = 1; s <= steps; s++) {
    while (ticks < (uint64_t)s) {
      uint64_t n;
      CHECK(read(tick, &n, sizeof n) == (ssize_t)sizeof n, "read(tick): %s", strerror(errno));
      CHECK(n > 0, "tick read 0 expirations");
      ticks += n;
    }

    struct itimerspec cur;
    CHECK_SYS(timerfd_gettime(once, &cur));
    int64_t left = ts_ns(cur.it_value);
    uint64_t n = take(once);
    if (n > 0) {
      CHECK(once_fired == 0 && n == 1, "step %d: once fired again (%llu)", s, (unsigned long long)n);
      once_fired = n;
      ticks += take(tick);  /* every tick due by now */
      CHECK(ticks >= ONCE_MS / STEP_MS, "step %d: once fired after only %llu ticks", s, (unsigned long long)ticks);
    } else if (once_fired == 0) {
      CHECK(left > 0 && left <= once_left, "step %d: once has %lld ns left, %lld before", s, (long long)left,
            (long long)once_left);
      once_left = left;
    } else {
      CHECK(left == 0, "step %d: once re-armed (%lld ns left)", s, (long long)left);
    }

    n = take(wall);
    if (n > 0) {
      CHECK(wall_fired == 0 && n == 1, "step %d: wall fired again", s);
      CHECK(now_ns(CLOCK_REALTIME) >= wall_at, "step %d: wall fired before its date", s);
      wall_fired = n;
    }
    CHECK(take(idle) == 0, "step %d: idle fired", s);

    if (s % 5 == 4) {
      /* expirations pile up unread, and stay so where a checkpoint comes */
      sleep_ms(250);
      feature_step(s);
      sleep_ms(150);
    } else {
      feature_step(s);
    }
  }
  if (wall_fired == 0) {
    CHECK(now_ns(CLOCK_REALTIME) >= wall_at, "the run ended before wall's date");
    uint64_t n;
    CHECK(read(wall, &n, sizeof n) == (ssize_t)sizeof n && n == 1, "wall did not fire");
    wall_fired = n;
  }
  CHECK(once_fired == 1, "once fired %llu times", (unsigned long long)once_fired);
  struct itimerspec cur;
  CHECK_SYS(timerfd_gettime(idle, &cur));
  CHECK(ts_ns(cur.it_value) == 0, "idle got armed");
  CHECK((fcntl(once, F_GETFL) & O_NONBLOCK) && !(fcntl(tick, F_GETFL) & O_NONBLOCK), "O_NONBLOCK changed");
  CHECK(fcntl(wall, F_GETFD) == FD_CLOEXEC && fcntl(tick, F_GETFD) == 0, "FD_CLOEXEC changed");

  print_timer("tick", tick);
  print_timer("once", once);
  print_timer("wall", wall);
  print_timer("idle", idle);
  printf("tick: at least %d expirations read, at least %d when once fired\n", steps, ONCE_MS / STEP_MS);
  printf("once fired once, wall fired once\n");
  printf("PASS\n");
  return 0;
}
