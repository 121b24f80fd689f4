// See posix_timers.h.
#include "shim/posix_timers.h"

#include "shim/proc_dir.h"
#include "shim/real_function.h"
#include "shim/runtime.h"
#include "shim/timer_stop.h"

#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

using namespace mig::shim;

namespace mig::shim {
namespace {

// glibc's SIGTIMER (= its SIGCANCEL, __SIGRTMIN): the signal of the kernel timer behind
// every SIGEV_THREAD timer; applications cannot use it (their SIGRTMIN is 34).
constexpr int kGlibcSigtimer = 32;

int64_t ns(const struct timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; }

bool absoluteBit(int32_t id) {
  if (id < 0 || id >= static_cast<int32_t>(kTimerFlagIds)) return false;
  return (g_runtime.timerAbsolute[id / 64].load() >> (id % 64)) & 1;
}

}  // namespace

void fillPosixTimers(control::Block& b) {
  b.timerCount = 0;
  // Without the file (a kernel without CONFIG_CHECKPOINT_RESTORE) timers cannot be
  // listed, and none are saved (docs/kinds/posix_timer.md).
  bool complete = rawSyscall(SYS_access, reinterpret_cast<long>("/proc/self/timers"), R_OK) == 0;
  control::TimerSlot* last = nullptr;  // the timer whose lines are being read
  forEachLine("/proc/self/timers", [&](const char* line) {
    int64_t id = 0;
    if (last != nullptr && numberAfter(line, "ClockID:", id)) last->clock = static_cast<int32_t>(id);
    if (!numberAfter(line, "ID:", id)) return true;
    if (b.timerCount == control::kMaxTimers) {
      complete = false;
      return false;
    }
    control::TimerSlot& s = b.timers[b.timerCount++];
    last = &s;
    s.id = static_cast<int32_t>(id);
    s.flags = absoluteBit(s.id) ? control::kTimerAbsolute : 0;
    readAndStopTimer(s.id, s);
    return true;
  });
  b.timersComplete = complete ? 1 : 0;
  // An absolute timer's date is taken as this clock plus the time it had left. Read
  // after every timer's time left, the date is late by at most this loop, never early:
  // a restored timer may fire a little late, as any timer may, but never before its date.
  struct timespec now {};
  rawSyscall(SYS_clock_gettime, CLOCK_REALTIME, reinterpret_cast<long>(&now));
  b.realtimeNs = ns(now);
}

void rearmPosixTimers(const control::Block& b) {
  for (uint32_t i = 0; i < b.timerCount && i < control::kMaxTimers; ++i) rearmTimer(b.timers[i], b.realtimeNs);
}

bool hasSigevThreadTimer() {
  bool found = false;
  forEachLine("/proc/self/timers", [&](const char* line) {
    int64_t signo = 0;
    found = numberAfter(line, "signal:", signo) && signo == kGlibcSigtimer;
    return !found;
  });
  return found;
}

}  // namespace mig::shim

extern "C" {

// Remembers whether each timer was last armed at an absolute time: a CLOCK_REALTIME
// timer armed for a date must fire at that date after a restart, not after the time
// it had left when it was saved.
__attribute__((visibility("default"))) int timer_settime(timer_t timer, int flags, const struct itimerspec* value,
                                                         struct itimerspec* old) {
  int r = MIG_REAL(timer_settime)(timer, flags, value, old);
  // A negative timer_t is glibc's SIGEV_THREAD timer (a pointer), never saved anyway.
  const intptr_t id = reinterpret_cast<intptr_t>(timer);
  if (r == 0 && id >= 0 && id < static_cast<intptr_t>(kTimerFlagIds)) {
    const uint64_t bit = 1ull << (id % 64);
    if (flags & TIMER_ABSTIME) g_runtime.timerAbsolute[id / 64].fetch_or(bit);
    else g_runtime.timerAbsolute[id / 64].fetch_and(~bit);
  }
  return r;
}

}  // extern "C"
