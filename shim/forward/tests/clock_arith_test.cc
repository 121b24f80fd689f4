// Unit tests of the clock offset arithmetic (clock_arith.h): which clocks a migrated
// job's offsets apply to, moving timespecs and timevals with tv_nsec kept in range,
// and which futex operations carry an absolute deadline on which clock.
#include "shim/forward/clock_arith.h"

#include <doctest/doctest.h>

using namespace mig::forward;

namespace {

constexpr int64_t kHour = 3600 * kNsPerSec;

bool same(struct timespec a, struct timespec b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }

}  // namespace

TEST_CASE("clockids: realtime ones follow home, monotonic ones the job, CPU clocks neither") {
  CHECK(clockKind(CLOCK_REALTIME) == ClockKind::kRealtime);
  CHECK(clockKind(CLOCK_REALTIME_COARSE) == ClockKind::kRealtime);
  CHECK(clockKind(CLOCK_TAI) == ClockKind::kRealtime);
  CHECK(clockKind(CLOCK_MONOTONIC) == ClockKind::kMonotonic);
  CHECK(clockKind(CLOCK_MONOTONIC_RAW) == ClockKind::kMonotonic);
  CHECK(clockKind(CLOCK_MONOTONIC_COARSE) == ClockKind::kMonotonic);
  CHECK(clockKind(CLOCK_BOOTTIME) == ClockKind::kMonotonic);
  CHECK(clockKind(CLOCK_PROCESS_CPUTIME_ID) == ClockKind::kNone);
  CHECK(clockKind(CLOCK_THREAD_CPUTIME_ID) == ClockKind::kNone);
  CHECK(clockKind(-6) == ClockKind::kNone);  // a dynamic (per-process CPU) clock
  // The kernel reads an int: garbage in the upper half of the register is ignored.
  CHECK(clockKind((int64_t{1} << 32) | CLOCK_REALTIME) == ClockKind::kRealtime);
}

TEST_CASE("shifting a timespec keeps tv_nsec in [0, 1e9)") {
  CHECK(same(shiftTimespec({100, 500000000}, 250000000), {100, 750000000}));
  CHECK(same(shiftTimespec({100, 900000000}, 200000000), {101, 100000000}));   // carry
  CHECK(same(shiftTimespec({100, 100000000}, -200000000), {99, 900000000}));   // borrow
  CHECK(same(shiftTimespec({100, 0}, -1), {99, 999999999}));
  CHECK(same(shiftTimespec({100, 999999999}, 1), {101, 0}));
  CHECK(same(shiftTimespec({100, 5}, kHour + 7), {3700, 12}));
  CHECK(same(shiftTimespec({5000, 5}, -kHour - 7), {1399, 999999998}));
  CHECK(same(shiftTimespec({100, 900000000}, 2 * kNsPerSec + 300000000), {103, 200000000}));
  CHECK(same(shiftTimespec({100, 100000000}, -(2 * kNsPerSec + 300000000)), {97, 800000000}));
}

TEST_CASE("a deadline the kernel would refuse stays refused; one before the epoch has passed") {
  CHECK(same(shiftTimespec({100, -1}, kHour), {100, -1}));
  CHECK(same(shiftTimespec({100, kNsPerSec}, -kHour), {100, kNsPerSec}));
  CHECK(same(shiftTimespec({-1, 0}, kHour), {-1, 0}));
  CHECK(same(shiftTimespec({10, 0}, -kHour), {0, 0}));
  // "Never" stays never rather than wrapping into the past.
  const time_t never = INT64_MAX;
  CHECK(same(shiftTimespec({never, 0}, kHour), {never, 0}));
  CHECK(shiftTimespec({never, 0}, -kHour).tv_sec == never - 3600);
}

TEST_CASE("timevals and time(2) seconds follow the same arithmetic") {
  struct timeval tv = shiftTimeval({100, 999999}, 1000);
  CHECK(tv.tv_sec == 101);
  CHECK(tv.tv_usec == 0);
  tv = shiftTimeval({100, 0}, -1);  // a reading rounds down, as gettimeofday does
  CHECK(tv.tv_sec == 99);
  CHECK(tv.tv_usec == 999999);
  tv = shiftTimeval({100, 1000000}, kHour);
  CHECK(tv.tv_sec == 100);
  CHECK(tv.tv_usec == 1000000);
  CHECK(shiftedSeconds({100, 600000000}, 500000000) == 101);
  CHECK(shiftedSeconds({100, 600000000}, 300000000) == 100);
  CHECK(shiftedSeconds({100, 0}, -kHour) == 0);
}

TEST_CASE("futex operations: which deadlines are absolute, on which clock") {
  // What glibc's pthread_cond_timedwait, sem_timedwait and the clockwait forms issue.
  CHECK(futexDeadlineClock(FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME) == ClockKind::kRealtime);
  CHECK(futexDeadlineClock(FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG) == ClockKind::kMonotonic);
  CHECK(futexDeadlineClock(FUTEX_WAIT_BITSET) == ClockKind::kMonotonic);
  // pthread_mutex_timedlock on a PI mutex.
  CHECK(futexDeadlineClock(FUTEX_LOCK_PI_PRIVATE) == ClockKind::kRealtime);
  CHECK(futexDeadlineClock(FUTEX_LOCK_PI2_PRIVATE) == ClockKind::kMonotonic);
  CHECK(futexDeadlineClock(FUTEX_LOCK_PI2 | FUTEX_CLOCK_REALTIME) == ClockKind::kRealtime);
  CHECK(futexDeadlineClock(FUTEX_WAIT_REQUEUE_PI_PRIVATE | FUTEX_CLOCK_REALTIME) == ClockKind::kRealtime);
  // Relative, or no timeout at all (the argument is val2).
  CHECK(futexDeadlineClock(FUTEX_WAIT_PRIVATE) == ClockKind::kNone);
  CHECK(futexDeadlineClock(FUTEX_WAIT) == ClockKind::kNone);
  CHECK(futexDeadlineClock(FUTEX_WAKE_PRIVATE) == ClockKind::kNone);
  CHECK(futexDeadlineClock(FUTEX_CMP_REQUEUE_PRIVATE) == ClockKind::kNone);
  CHECK(futexDeadlineClock(FUTEX_WAKE_OP_PRIVATE) == ClockKind::kNone);
  CHECK(futexDeadlineClock(FUTEX_UNLOCK_PI_PRIVATE) == ClockKind::kNone);
  CHECK(futexDeadlineClock(FUTEX_TRYLOCK_PI) == ClockKind::kNone);
}

TEST_CASE("clock_nanosleep: only TIMER_ABSTIME sleeps depend on the clock") {
  CHECK(sleepDeadlineClock(CLOCK_REALTIME, TIMER_ABSTIME) == ClockKind::kRealtime);
  CHECK(sleepDeadlineClock(CLOCK_TAI, TIMER_ABSTIME) == ClockKind::kRealtime);
  CHECK(sleepDeadlineClock(CLOCK_MONOTONIC, TIMER_ABSTIME) == ClockKind::kMonotonic);
  CHECK(sleepDeadlineClock(CLOCK_REALTIME, 0) == ClockKind::kNone);
  CHECK(sleepDeadlineClock(CLOCK_MONOTONIC, 0) == ClockKind::kNone);
  CHECK(sleepDeadlineClock(CLOCK_PROCESS_CPUTIME_ID, TIMER_ABSTIME) == ClockKind::kNone);
}
