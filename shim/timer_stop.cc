// See timer_stop.h.
#include "shim/timer_stop.h"

#include "shim/raw_syscall.h"

#include <sys/syscall.h>
#include <time.h>

namespace mig::shim {
namespace {

int64_t ns(const struct timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; }

bool zero(const struct timespec& t) { return t.tv_sec == 0 && t.tv_nsec == 0; }

}  // namespace

void readAndStopTimer(int32_t id, control::TimerSlot& s) {
  struct itimerspec its {};
  rawSyscall(SYS_timer_gettime, id, reinterpret_cast<long>(&its));
  const long overrun = rawSyscall(SYS_timer_getoverrun, id);
  s.overrun = overrun < 0 ? 0 : static_cast<int32_t>(overrun);
  // A one-shot timer is stopped, as ITIMER_REAL is: running on, it could expire while
  // the job is frozen here, once here (its signal pending in the image, or sent to the
  // deputy) and once more from its time left where the job goes on. Only if armed: any
  // timer_settime makes the kernel drop a signal of that timer still pending (Linux >=
  // 6.13), and an armed one-shot timer has none that counts. A periodic timer runs on:
  // its signal, often pending while it is armed, would be lost.
  if (!zero(its.it_value) && zero(its.it_interval)) {
    const struct itimerspec stop {};
    // The time left at the instant of the stop; 0: it expired since the read, and its
    // signal is pending (taken into the image with the others).
    rawSyscall(SYS_timer_settime, id, 0, reinterpret_cast<long>(&stop), reinterpret_cast<long>(&its));
    s.flags |= control::kTimerStopped;
    if (zero(its.it_value)) s.flags |= control::kTimerExpiredAtStop;
  }
  s.valueNs = ns(its.it_value);
  s.intervalNs = ns(its.it_interval);
}

void rearmTimer(const control::TimerSlot& s, int64_t realtimeNs) {
  if (!(s.flags & control::kTimerStopped)) return;
  // As a restore does: the time left counts from now (frozen time does not count), and
  // an absolute wall-clock timer keeps its date.
  int flags = 0;
  int64_t value = s.valueNs;
  const bool wallClock = s.clock == CLOCK_REALTIME || s.clock == CLOCK_REALTIME_ALARM;
  if (s.flags & control::kTimerExpiredAtStop) {
    // The stop made the kernel drop its pending signal (Linux >= 6.13): armed for 1 ns
    // it is sent again, once (on an older kernel the signal still pending only counts
    // an overrun).
    value = 1;
  } else if ((s.flags & control::kTimerAbsolute) && wallClock) {
    flags = TIMER_ABSTIME;
    value += realtimeNs;
  }
  struct itimerspec its {};
  its.it_value.tv_sec = value / 1000000000;
  its.it_value.tv_nsec = value % 1000000000;
  rawSyscall(SYS_timer_settime, s.id, flags, reinterpret_cast<long>(&its), 0);
}

}  // namespace mig::shim
