// The arithmetic of a migrated job's clock offsets (clock_shift.h), kept apart from
// the shim's state so the unit tests reach it: which of the job's two shifted clocks
// a clockid reads, moving a timespec or timeval by a number of nanoseconds, and which
// clock the absolute deadline of a futex operation is on. Pure and async-signal-safe.
#pragma once

#include <cstdint>
#include <ctime>
#include <linux/futex.h>
#include <sys/time.h>

namespace mig::forward {

inline constexpr int64_t kNsPerSec = 1000000000;

// kRealtime: follows home's CLOCK_REALTIME (Config::realtimeOffsetNs).
// kMonotonic: goes on from the job's monotonic clock (Config::monotonicOffsetNs).
enum class ClockKind : uint8_t { kNone, kRealtime, kMonotonic };

// The kernel reads a clockid as an int. CPU-time clocks and the dynamic (negative)
// clockids are the same on every host: kNone.
constexpr ClockKind clockKind(int64_t clockArg) {
  switch (static_cast<int32_t>(clockArg)) {
    case CLOCK_REALTIME: case CLOCK_REALTIME_COARSE: case CLOCK_TAI: case CLOCK_REALTIME_ALARM:
      return ClockKind::kRealtime;
    // A time namespace offsets MONOTONIC_RAW like MONOTONIC; we do the same.
    case CLOCK_MONOTONIC: case CLOCK_MONOTONIC_RAW: case CLOCK_MONOTONIC_COARSE: case CLOCK_BOOTTIME:
    case CLOCK_BOOTTIME_ALARM:
      return ClockKind::kMonotonic;
    default:
      return ClockKind::kNone;
  }
}

// The clock an absolute futex(2) timeout is on, or kNone when the operation takes no
// timeout or a relative one (FUTEX_WAIT; the 4th argument of the others is val2).
constexpr ClockKind futexDeadlineClock(int64_t opArg) {
  const int op = static_cast<int>(opArg);
  const bool realtime = (op & FUTEX_CLOCK_REALTIME) != 0;
  switch (op & FUTEX_CMD_MASK) {
    case FUTEX_WAIT_BITSET: case FUTEX_WAIT_REQUEUE_PI: case FUTEX_LOCK_PI2:
      return realtime ? ClockKind::kRealtime : ClockKind::kMonotonic;
    case FUTEX_LOCK_PI:  // always an absolute CLOCK_REALTIME time
      return ClockKind::kRealtime;
    default:
      return ClockKind::kNone;
  }
}

// clock_nanosleep(2) and the like: only TIMER_ABSTIME deadlines depend on the clock.
constexpr ClockKind sleepDeadlineClock(int64_t clockArg, int64_t flagsArg) {
  return (flagsArg & TIMER_ABSTIME) ? clockKind(clockArg) : ClockKind::kNone;
}

// t + ns with tv_nsec in [0, 1e9). A value the kernel would refuse (tv_nsec out of
// range, negative seconds) is returned unchanged so it is still refused, not made
// valid; a result before the epoch becomes 0 (a deadline that has passed), and one
// past the end of time_t stays as it was (callers use huge values for "never").
inline struct timespec shiftTimespec(struct timespec t, int64_t ns) {
  if (t.tv_nsec < 0 || t.tv_nsec >= kNsPerSec || t.tv_sec < 0) return t;
  int64_t nsec = t.tv_nsec + ns % kNsPerSec;
  int64_t carry = nsec >= kNsPerSec ? 1 : nsec < 0 ? -1 : 0;
  nsec -= carry * kNsPerSec;
  int64_t sec;
  if (__builtin_add_overflow(static_cast<int64_t>(t.tv_sec), ns / kNsPerSec + carry, &sec)) return t;
  if (sec < 0) return {0, 0};
  return {static_cast<time_t>(sec), static_cast<long>(nsec)};
}

inline struct timeval shiftTimeval(struct timeval t, int64_t ns) {
  struct timespec s = shiftTimespec({t.tv_sec, static_cast<long>(t.tv_usec) * 1000}, ns);
  if (t.tv_usec < 0 || t.tv_usec >= 1000000) return t;
  return {s.tv_sec, static_cast<suseconds_t>(s.tv_nsec / 1000)};
}

// Seconds of time(2) for a clock reading shifted by ns.
inline time_t shiftedSeconds(struct timespec now, int64_t ns) { return shiftTimespec(now, ns).tv_sec; }

}  // namespace mig::forward
