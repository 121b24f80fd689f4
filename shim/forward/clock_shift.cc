// See clock_shift.h. The handler half runs in the SIGSYS handler: raw system calls
// from the shim's code, no allocation, no locks, errno untouched. A deadline is
// converted in a copy on the handler's stack; the application's own struct is never
// written, so its retry loops see the value they computed.
#include "shim/forward/clock_shift.h"

#include "shim/proc_dir.h"
#include "shim/raw_syscall.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>

namespace mig::forward {

ClockShift g_clockShift;
thread_local uint32_t t_inClockFunction MIG_TLS;

void setClockShift(const Config& c) {
  g_clockShift.on.store(0, std::memory_order_release);
  g_clockShift.realtimeNs = c.realtimeOffsetNs;
  g_clockShift.monotonicNs = c.monotonicOffsetNs;
  if (c.realtimeOffsetNs != 0 || c.monotonicOffsetNs != 0) g_clockShift.on.store(1, std::memory_order_release);
}

void clearClockShift() {
  g_clockShift.on.store(0, std::memory_order_release);
  g_clockShift.realtimeNs = g_clockShift.monotonicNs = 0;
}

namespace {

using shim::forEachLine;
using shim::numberAfter;
using shim::putDecimal;
using shim::rawSyscall;

constexpr long kSysFutexWait = 455;  // futex_wait(2), Linux 6.7; not in older headers

// The clock a timerfd was created on (its fdinfo says), kNone if unknown.
ClockKind timerfdClock(int64_t fdArg) {
  char path[40] = "/proc/self/fdinfo/";
  putDecimal(path + 18, static_cast<uint32_t>(fdArg));
  ClockKind kind = ClockKind::kNone;
  forEachLine(path, [&](const char* line) {
    int64_t id;
    if (!numberAfter(line, "clockid:", id)) return true;
    kind = clockKind(id);
    return false;
  });
  return kind;
}

// The clock of POSIX timer `id` (its entry in /proc/self/timers), kNone if unknown.
ClockKind posixTimerClock(int64_t idArg) {
  const int64_t want = static_cast<int32_t>(idArg);
  ClockKind kind = ClockKind::kNone;
  bool inEntry = false;
  forEachLine("/proc/self/timers", [&](const char* line) {
    int64_t v;
    if (numberAfter(line, "ID:", v)) inEntry = v == want;
    else if (inEntry && numberAfter(line, "ClockID:", v)) {
      kind = clockKind(v);
      return false;
    }
    return true;
  });
  return kind;
}

// Runs c with its absolute deadline at a[arg] (a timespec, or an itimerspec's
// it_value) moved from the job's clock to this host's.
long runWithLocalDeadline(const TrappedCall& c, const ucontext_t* uc, int arg, ClockKind kind, bool itimerspec) {
  const int64_t offset = clockOffsetNs(kind);
  if (c.a[arg] == 0 || offset == 0) return runLocally(c, uc);
  TrappedCall local = c;
  struct itimerspec it {};
  if (itimerspec) {
    it = *reinterpret_cast<const struct itimerspec*>(c.a[arg]);
    // A zero it_value disarms the timer, whatever the offset; a deadline that the
    // offset puts before the epoch has passed: fire now rather than disarm.
    if (it.it_value.tv_sec != 0 || it.it_value.tv_nsec != 0) {
      it.it_value = shiftTimespec(it.it_value, -offset);
      if (it.it_value.tv_sec == 0 && it.it_value.tv_nsec == 0) it.it_value.tv_nsec = 1;
    }
    local.a[arg] = reinterpret_cast<int64_t>(&it);
  } else {
    it.it_value = shiftTimespec(*reinterpret_cast<const struct timespec*>(c.a[arg]), -offset);
    local.a[arg] = reinterpret_cast<int64_t>(&it.it_value);
  }
  return runLocally(local, uc);
}

// A clock reading the kernel wrote to a[arg]: add the job's offset.
void shiftReading(const TrappedCall& c, int arg, ClockKind kind, bool timeval) {
  if (c.a[arg] == 0 || t_inClockFunction != 0) return;  // the shim's function adds it
  const int64_t offset = clockOffsetNs(kind);
  if (timeval) {
    auto* tv = reinterpret_cast<struct timeval*>(c.a[arg]);
    *tv = shiftTimeval(*tv, offset);
  } else {
    auto* ts = reinterpret_cast<struct timespec*>(c.a[arg]);
    *ts = shiftTimespec(*ts, offset);
  }
}

}  // namespace

bool shiftedClockCall(const TrappedCall& c, const ucontext_t* uc, long& result) {
  if (!clockShifted()) return false;
  const int64_t* a = c.a;
  switch (c.nr) {
    case SYS_clock_gettime:
      result = runLocally(c, uc);
      if (result == 0) shiftReading(c, 1, clockKind(a[0]), false);
      return true;
    case SYS_gettimeofday:
      result = runLocally(c, uc);
      if (result == 0) shiftReading(c, 0, ClockKind::kRealtime, true);
      return true;
    case SYS_time: {
      if (t_inClockFunction != 0) return false;
      struct timespec now {};
      rawSyscall(SYS_clock_gettime, CLOCK_REALTIME, reinterpret_cast<long>(&now));
      result = shiftedSeconds(now, g_clockShift.realtimeNs);
      if (a[0] != 0) *reinterpret_cast<time_t*>(a[0]) = static_cast<time_t>(result);
      return true;
    }
    case SYS_clock_nanosleep:
      result = runWithLocalDeadline(c, uc, 2, sleepDeadlineClock(a[0], a[1]), false);
      return true;
    case SYS_futex:
      result = runWithLocalDeadline(c, uc, 3, futexDeadlineClock(a[1]), false);
      return true;
    case SYS_futex_waitv:  // always absolute, on the clock given
      result = runWithLocalDeadline(c, uc, 3, clockKind(a[4]), false);
      return true;
    case kSysFutexWait:
      result = runWithLocalDeadline(c, uc, 4, clockKind(a[5]), false);
      return true;
    case SYS_mq_timedsend: case SYS_mq_timedreceive:  // absolute CLOCK_REALTIME
      result = runWithLocalDeadline(c, uc, 4, ClockKind::kRealtime, false);
      return true;
    case SYS_timerfd_settime:
      if (!(a[1] & TFD_TIMER_ABSTIME)) return false;
      result = runWithLocalDeadline(c, uc, 2, timerfdClock(a[0]), true);
      return true;
    case SYS_timer_settime:
      if (!(a[1] & TIMER_ABSTIME)) return false;
      result = runWithLocalDeadline(c, uc, 2, posixTimerClock(a[0]), true);
      return true;
    default:
      return false;
  }
}

}  // namespace mig::forward
