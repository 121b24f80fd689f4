// The libc functions a migrated job reads its clocks with: clock_gettime,
// gettimeofday, time, timespec_get. glibc answers them from the vDSO, without a
// system call that syscall user dispatch could catch, so the shim exports them and
// adds the job's offsets (clock_shift.h). Without an offset, which is every process
// that never migrated, each costs two loads, two predictable branches and a tail jump
// to the real function: everything else is out of line.
#include "shim/forward/clock_shift.h"

#include <ctime>
#include <dlfcn.h>
#include <sys/time.h>

using namespace mig::forward;

namespace {

// The real functions, resolved on first use (as MIG_REAL does, but out of line).
decltype(&::clock_gettime) g_clockGettime;
decltype(&::gettimeofday) g_gettimeofday;
decltype(&::time) g_time;
decltype(&::timespec_get) g_timespecGet;

template <typename F>
F real(F* slot, const char* name) {
  F fn = __atomic_load_n(slot, __ATOMIC_RELAXED);
  if (fn == nullptr) {
    fn = reinterpret_cast<F>(dlsym(RTLD_NEXT, name));  // calls nothing the shim exports
    __atomic_store_n(slot, fn, __ATOMIC_RELAXED);
  }
  return fn;
}

// Calls the real function with the SIGSYS handler told not to add the offset as well:
// a vDSO without a usable clock source falls back to the system call, which is
// trapped in a migrated process.
template <typename Fn>
auto callReal(Fn fn) {
  const uint32_t outer = t_inClockFunction;  // a signal handler may read a clock meanwhile
  t_inClockFunction = 1;
  auto r = fn();
  t_inClockFunction = outer;
  return r;
}

// The first call, and every call with an offset.
__attribute__((noinline, cold)) int slowClockGettime(clockid_t clock, struct timespec* ts) {
  auto fn = real(&g_clockGettime, "clock_gettime");
  if (!clockShifted()) return fn(clock, ts);
  int r = callReal([&] { return fn(clock, ts); });
  if (r == 0) *ts = shiftTimespec(*ts, clockOffsetNs(clockKind(clock)));
  return r;
}

__attribute__((noinline, cold)) int slowGettimeofday(struct timeval* tv, void* tz) {
  auto fn = real(&g_gettimeofday, "gettimeofday");
  if (!clockShifted()) return fn(tv, tz);
  int r = callReal([&] { return fn(tv, tz); });
  if (r == 0 && tv != nullptr) *tv = shiftTimeval(*tv, g_clockShift.realtimeNs);
  return r;
}

__attribute__((noinline, cold)) time_t slowTime(time_t* out) {
  auto fn = real(&g_time, "time");
  if (!clockShifted()) return fn(out);
  // time() alone has no fraction to carry an offset's nanoseconds: read the clock it
  // reads (the coarse one) in full.
  auto gettime = real(&g_clockGettime, "clock_gettime");
  struct timespec now {};
  callReal([&] { return gettime(CLOCK_REALTIME_COARSE, &now); });
  time_t t = shiftedSeconds(now, g_clockShift.realtimeNs);
  if (out != nullptr) *out = t;
  return t;
}

__attribute__((noinline, cold)) int slowTimespecGet(struct timespec* ts, int base) {
  auto fn = real(&g_timespecGet, "timespec_get");
  if (!clockShifted()) return fn(ts, base);
  int r = callReal([&] { return fn(ts, base); });
  if (r == TIME_UTC) *ts = shiftTimespec(*ts, g_clockShift.realtimeNs);
  return r;
}

// The hot path's test: not resolved yet, or an offset to add.
template <typename F>
inline bool slow(F* slot) {
  return __builtin_expect(clockShifted() || __atomic_load_n(slot, __ATOMIC_RELAXED) == nullptr, 0);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int clock_gettime(clockid_t clock, struct timespec* ts) {
  if (slow(&g_clockGettime)) return slowClockGettime(clock, ts);
  return g_clockGettime(clock, ts);
}

__attribute__((visibility("default"))) int gettimeofday(struct timeval* tv, void* tz) {
  if (slow(&g_gettimeofday)) return slowGettimeofday(tv, tz);
  return g_gettimeofday(tv, tz);
}

__attribute__((visibility("default"))) time_t time(time_t* out) {
  if (slow(&g_time)) return slowTime(out);
  return g_time(out);
}

__attribute__((visibility("default"))) int timespec_get(struct timespec* ts, int base) {
  if (slow(&g_timespecGet)) return slowTimespecGet(ts, base);
  return g_timespecGet(ts, base);
}

}  // extern "C"
