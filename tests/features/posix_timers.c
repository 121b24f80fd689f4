/* posix_timers: timer_create timers that keep their ids, times and signals
 * across a checkpoint.
 * - tick: CLOCK_MONOTONIC, every 50 ms, SIGEV_SIGNAL SIGRTMIN with value 0x7101.
 *   Every step (100 ms) must see new ticks; each carries the value, SI_TIMER and
 *   the timer's id; the overrun stays sane.
 * - once: CLOCK_BOOTTIME, one-shot at 2.2 s, SIGEV_THREAD_ID SIGRTMIN+1 to the
 *   worker thread, value &once_fired. Its time left may only go down and never
 *   exceeds 2.2 s; it must fire exactly once, on the worker, and not before 40
 *   ticks (both stand still while the process is checkpointed; overruns count).
 * - wall: CLOCK_REALTIME, absolute (TIMER_ABSTIME) 2.5 s after the start,
 *   SIGRTMIN+2: a date, so it fires exactly once, never before that date, and
 *   its time left is never more than the time to the date (a checkpoint does
 *   not move it).
 * - cpu: CLOCK_PROCESS_CPUTIME_ID, SIGEV_NONE, 100 s of CPU time: read with
 *   timer_gettime only, its time left stays in (0, 100 s].
 * - idle: CLOCK_MONOTONIC, never armed: timer_gettime says disarmed.
 * - blink: CLOCK_MONOTONIC, one-shot, SIGRTMIN+4, armed for s ms right before the
 *   line of step s (so at the checkpoint's step it may expire while the job is
 *   frozen), and again at a later step once it has fired: it must fire exactly once
 *   per arming, never twice (docs/kinds/posix_timer.md: stopped at the freeze).
 * Every timer_t must stay valid (timer_gettime succeeds) at every step.
 *
 * usage: posix_timers [STEPS]   (default 30, at least 30 so the one-shots fire)
 */
#include "feature.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

enum { STEP_MS = 100, TICK_MS = 50, ONCE_MS = 2200, WALL_MS = 2500, CPU_S = 100, MIN_TICKS_AT_ONCE = 40 };
#define TICK_VALUE 0x7101
#define WALL_VALUE 0x3a11

static timer_t tick, once, wall, cpu, idle, blink;
static int once_fired_marker;
static atomic_long ticks, overruns, bad_ticks, blink_armed, blink_fired;
static atomic_int once_fired, once_on_worker, once_too_early, wall_fired, wall_too_early, max_overrun;
static pthread_t worker;
static atomic_int done;
static int64_t wall_date_ns;

static int64_t ts_ns(struct timespec t) { return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec; }
static struct timespec ns_ts(int64_t ns) { return (struct timespec){ ns / 1000000000LL, ns % 1000000000LL }; }

static int64_t now_ns(clockid_t c)
{
  struct timespec t;
  clock_gettime(c, &t);
  return ts_ns(t);
}

static int timer_id(timer_t t) { return (int)(intptr_t)t; }

static void on_tick(int sig, siginfo_t *si, void *uc)
{
  (void)sig; (void)uc;
  if (si->si_code != SI_TIMER || si->si_value.sival_int != TICK_VALUE || si->si_timerid != timer_id(tick))
    atomic_fetch_add(&bad_ticks, 1);
  atomic_fetch_add(&ticks, 1);
  atomic_fetch_add(&overruns, si->si_overrun);
  if (si->si_overrun > atomic_load(&max_overrun))
    atomic_store(&max_overrun, si->si_overrun);
}

static void on_once(int sig, siginfo_t *si, void *uc)
{
  (void)sig; (void)uc;
  if (si->si_code == SI_TIMER && si->si_value.sival_ptr == &once_fired_marker && si->si_timerid == timer_id(once))
    atomic_fetch_add(&once_fired, 1);
  if (pthread_equal(pthread_self(), worker))
    atomic_fetch_add(&once_on_worker, 1);
  if (atomic_load(&ticks) + atomic_load(&overruns) < MIN_TICKS_AT_ONCE)
    atomic_fetch_add(&once_too_early, 1);
}

static void on_wall(int sig, siginfo_t *si, void *uc)
{
  (void)sig; (void)uc;
  if (si->si_code == SI_TIMER && si->si_value.sival_int == WALL_VALUE && si->si_timerid == timer_id(wall))
    atomic_fetch_add(&wall_fired, 1);
  if (now_ns(CLOCK_REALTIME) < wall_date_ns)
    atomic_fetch_add(&wall_too_early, 1);
}

static void on_blink(int sig, siginfo_t *si, void *uc)
{
  (void)sig; (void)uc;
  if (si->si_code == SI_TIMER && si->si_timerid == timer_id(blink))
    atomic_fetch_add(&blink_fired, 1);
}

static timer_t make(clockid_t clock, int notify, int signo, union sigval value, pid_t tid)
{
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = notify;
  ev.sigev_signo = signo;
  ev.sigev_value = value;
  if (notify == SIGEV_THREAD_ID)
    ev._sigev_un._tid = tid;
  timer_t t;
  CHECK_SYS(timer_create(clock, &ev, &t));
  return t;
}

static void arm(timer_t t, int flags, int64_t value_ns, int64_t interval_ns)
{
  struct itimerspec its = { ns_ts(interval_ns), ns_ts(value_ns) };
  CHECK_SYS(timer_settime(t, flags, &its, NULL));
}

/* Time left on t (0: disarmed); fails if the id is no longer valid. */
static int64_t left(timer_t t, const char *name, int64_t *interval)
{
  struct itimerspec its;
  if (timer_gettime(t, &its) != 0)
    feature_fail("timer_gettime(%s, id %d): %s", name, timer_id(t), strerror(errno));
  if (interval)
    *interval = ts_ns(its.it_interval);
  return ts_ns(its.it_value);
}

static atomic_int worker_tid;

static void *worker_main(void *arg)
{
  (void)arg;
  atomic_store(&worker_tid, (int)gettid());
  while (!atomic_load(&done))
    sleep_ms_restarting(20);
  return NULL;
}

int main(int argc, char **argv)
{
  int steps = argc > 1 ? atoi(argv[1]) : 30;
  CHECK(steps >= 30, "at least 30 steps, so that the one-shot timers fire");
  feature_handle(SIGRTMIN, on_tick, SA_RESTART);
  feature_handle(SIGRTMIN + 1, on_once, SA_RESTART);
  feature_handle(SIGRTMIN + 2, on_wall, SA_RESTART);
  feature_handle(SIGRTMIN + 4, on_blink, SA_RESTART);
  CHECK(pthread_create(&worker, NULL, worker_main, NULL) == 0, "pthread_create");
  while (atomic_load(&worker_tid) == 0)
    sleep_ms(1);

  tick = make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN, (union sigval){ .sival_int = TICK_VALUE }, 0);
  once = make(CLOCK_BOOTTIME, SIGEV_THREAD_ID, SIGRTMIN + 1, (union sigval){ .sival_ptr = &once_fired_marker },
              atomic_load(&worker_tid));
  wall = make(CLOCK_REALTIME, SIGEV_SIGNAL, SIGRTMIN + 2, (union sigval){ .sival_int = WALL_VALUE }, 0);
  cpu = make(CLOCK_PROCESS_CPUTIME_ID, SIGEV_NONE, 0, (union sigval){ .sival_int = 0 }, 0);
  idle = make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 3, (union sigval){ .sival_int = 0 }, 0);
  blink = make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 4, (union sigval){ .sival_int = 0 }, 0);
  wall_date_ns = now_ns(CLOCK_REALTIME) + WALL_MS * 1000000LL;
  arm(cpu, 0, CPU_S * 1000000000LL, 0);
  arm(wall, TIMER_ABSTIME, wall_date_ns, 0);
  arm(once, 0, ONCE_MS * 1000000LL, 0);
  arm(tick, 0, TICK_MS * 1000000LL, TICK_MS * 1000000LL);

  int64_t once_before = ONCE_MS * 1000000LL;
  long ticks_before = 0;
  for (int s = 1; s <= steps; ++s) {
    sleep_ms_restarting(STEP_MS);
    long t = atomic_load(&ticks);
    CHECK(t > ticks_before, "step %d: no tick since the step before (%ld ticks)", s, t);
    ticks_before = t;
    int64_t interval;
    CHECK(left(tick, "tick", &interval) > 0 && interval == TICK_MS * 1000000LL, "step %d: tick lost its interval", s);
    int64_t o = left(once, "once", NULL);
    if (!atomic_load(&once_fired)) {
      CHECK(o <= once_before, "step %d: once's time left went up (%lld ns after %lld ns)", s, (long long)o,
            (long long)once_before);
      once_before = o;
    } else {
      CHECK(o == 0, "step %d: once still armed after firing", s);
    }
    int64_t w = left(wall, "wall", NULL);
    if (!atomic_load(&wall_fired))
      CHECK(w <= wall_date_ns - now_ns(CLOCK_REALTIME) + 50000000LL,
            "step %d: wall's time left (%lld ns) is beyond its date: it was moved", s, (long long)w);
    int64_t c = left(cpu, "cpu", NULL);
    CHECK(c > 0 && c <= CPU_S * 1000000000LL, "step %d: cpu's time left %lld ns is not in (0, %d s]", s,
          (long long)c, CPU_S);
    CHECK(left(idle, "idle", NULL) == 0, "step %d: idle is armed", s);
    int over = timer_getoverrun(tick);
    CHECK(over >= 0 && over < 1000, "step %d: timer_getoverrun(tick) = %d (%s)", s, over, strerror(errno));
    long fired = atomic_load(&blink_fired), armed = atomic_load(&blink_armed);
    CHECK(fired <= armed, "step %d: blink fired %ld times for %ld armings", s, fired, armed);
    if (fired == armed) {
      atomic_fetch_add(&blink_armed, 1);
      arm(blink, 0, s * 1000000LL, 0);
    }
    feature_step(s);
  }
  /* The one-shots are due by now; allow a little for a loaded machine. */
  for (int i = 0; i < 200 && !(atomic_load(&once_fired) && atomic_load(&wall_fired) &&
                               atomic_load(&blink_fired) >= atomic_load(&blink_armed)); ++i)
    sleep_ms_restarting(10);
  atomic_store(&done, 1);
  CHECK(pthread_join(worker, NULL) == 0, "pthread_join");

  CHECK(atomic_load(&bad_ticks) == 0, "%ld ticks without SI_TIMER, their value or their timer's id",
        atomic_load(&bad_ticks));
  CHECK(atomic_load(&max_overrun) < 100, "a tick reported %d overruns", atomic_load(&max_overrun));
  CHECK(atomic_load(&once_fired) == 1, "once fired %d times (with its value and id)", atomic_load(&once_fired));
  CHECK(atomic_load(&once_on_worker) == 1, "once's signal reached the worker thread %d times",
        atomic_load(&once_on_worker));
  CHECK(atomic_load(&once_too_early) == 0, "once fired before %d ticks", MIN_TICKS_AT_ONCE);
  CHECK(atomic_load(&wall_fired) == 1, "wall fired %d times (with its value and id)", atomic_load(&wall_fired));
  CHECK(atomic_load(&wall_too_early) == 0, "wall fired before its date");
  CHECK(atomic_load(&blink_fired) == atomic_load(&blink_armed), "blink fired %ld times for %ld armings",
        atomic_load(&blink_fired), atomic_load(&blink_armed));
  CHECK(left(wall, "wall", NULL) == 0 && left(once, "once", NULL) == 0 && left(blink, "blink", NULL) == 0,
        "a one-shot is still armed");
  printf("tick: CLOCK_MONOTONIC every %d ms, SIGEV_SIGNAL, value and id in every signal\n", TICK_MS);
  printf("once: CLOCK_BOOTTIME one-shot, SIGEV_THREAD_ID, fired once on its thread\n");
  printf("wall: CLOCK_REALTIME absolute, fired once, not before its date\n");
  printf("cpu: CLOCK_PROCESS_CPUTIME_ID, SIGEV_NONE, time left in range\n");
  printf("idle: disarmed\n");
  printf("blink: CLOCK_MONOTONIC one-shot armed again and again, fired once per arming\n");
  for (timer_t *t = (timer_t[]){ tick, once, wall, cpu, idle, blink }, *e = t + 6; t < e; ++t)
    CHECK_SYS(timer_delete(*t));
  printf("PASS\n");
  return 0;
}
