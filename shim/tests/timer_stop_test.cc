// Unit tests of stopping one-shot POSIX timers at a freeze (timer_stop.h): a stopped
// timer does not expire while the job is frozen and fires once when it goes on; a
// timer whose signal is pending is left alone; a periodic one runs on; an absolute
// wall-clock one keeps its date. The freeze is the test holding between the two calls;
// the timers signal this thread, which blocks the signal so it can count it.
#include "shim/timer_stop.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <csignal>
#include <ctime>

using namespace mig;

namespace {

constexpr int64_t kMs = 1000000;

int timerSignal() { return SIGRTMIN + 5; }

int64_t now(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

struct timespec ts(int64_t ns) { return {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)}; }

// A CLOCK_MONOTONIC (or `clock`) timer signalling this process; its signal blocked.
struct TestTimer {
  timer_t t{};
  explicit TestTimer(clockid_t clock = CLOCK_MONOTONIC) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, timerSignal());
    sigprocmask(SIG_BLOCK, &set, nullptr);
    struct sigevent ev {};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = timerSignal();
    REQUIRE(timer_create(clock, &ev, &t) == 0);
  }
  ~TestTimer() {
    timer_delete(t);
    while (taken(0) > 0) {
    }
  }
  int32_t id() const { return static_cast<int32_t>(reinterpret_cast<intptr_t>(t)); }
  void arm(int64_t valueNs, int64_t intervalNs = 0, int flags = 0) {
    struct itimerspec its = {ts(intervalNs), ts(valueNs)};
    REQUIRE(timer_settime(t, flags, &its, nullptr) == 0);
  }
  int64_t left() {
    struct itimerspec its {};
    timer_gettime(t, &its);
    return its.it_value.tv_sec * 1000000000LL + its.it_value.tv_nsec;
  }
  // Takes one signal of this timer, waiting up to waitNs: 1, or 0 if none came.
  int taken(int64_t waitNs) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, timerSignal());
    const struct timespec wait = ts(waitNs);
    siginfo_t info{};
    if (sigtimedwait(&set, &info, &wait) != timerSignal()) return 0;
    CHECK(info.si_code == SI_TIMER);
    CHECK(info.si_timerid == id());
    return 1;
  }
};

bool pending() {
  sigset_t set;
  sigpending(&set);
  return sigismember(&set, timerSignal());
}

// Sleeps until `clock` reads at least `ns`: past a timer's expiry, whatever the load.
void sleepUntil(clockid_t clock, int64_t ns) {
  const struct timespec t = ts(ns);
  while (clock_nanosleep(clock, TIMER_ABSTIME, &t, nullptr) == EINTR) {
  }
}

}  // namespace

TEST_CASE("a one-shot timer stopped at the freeze never expires while frozen, and fires once after") {
  TestTimer timer;
  control::TimerSlot s{};
  int64_t armedAt = 0;
  do {  // read before it expires: 200 ms is plenty, but a loaded machine may stall
    while (timer.taken(0) > 0) {
    }
    s = control::TimerSlot{};
    s.id = timer.id();
    armedAt = now(CLOCK_MONOTONIC);
    timer.arm(200 * kMs);
    shim::readAndStopTimer(s.id, s);
  } while (s.flags & control::kTimerExpiredAtStop);
  REQUIRE((s.flags & control::kTimerStopped) != 0);
  CHECK(s.valueNs > 0);
  CHECK(s.valueNs <= 200 * kMs);
  CHECK(s.intervalNs == 0);

  sleepUntil(CLOCK_MONOTONIC, armedAt + 400 * kMs);  // frozen past its expiry
  CHECK_FALSE(pending());  // running on, it would have fired here, where the job is no more
  CHECK(timer.left() == 0);

  shim::rearmTimer(s, 0);  // the job goes on here after all
  CHECK(timer.left() > 0);
  CHECK(timer.taken(10000 * kMs) == 1);
  CHECK(timer.taken(0) == 0);
  CHECK(timer.left() == 0);
}

TEST_CASE("a one-shot timer that expired just before its stop is sent once when the job goes on") {
  TestTimer timer;
  timer.arm(1);
  for (int i = 0; i < 10000 && !pending(); ++i) sleepUntil(CLOCK_MONOTONIC, now(CLOCK_MONOTONIC) + kMs);
  REQUIRE(pending());
  // What readAndStopTimer meets when the expiry falls between its read and its stop:
  // the stop comes after the expiry (Linux >= 6.13 then drops the pending signal).
  const struct itimerspec stop {};
  REQUIRE(timer_settime(timer.t, 0, &stop, nullptr) == 0);
  control::TimerSlot s{};
  s.id = timer.id();
  s.flags = control::kTimerStopped | control::kTimerExpiredAtStop;
  shim::rearmTimer(s, 0);
  CHECK(timer.taken(10000 * kMs) == 1);
  sleepUntil(CLOCK_MONOTONIC, now(CLOCK_MONOTONIC) + 10 * kMs);
  CHECK(timer.taken(0) == 0);
  CHECK(timer.left() == 0);
}

TEST_CASE("a disarmed timer whose signal is pending is left alone, its signal kept") {
  TestTimer timer;
  timer.arm(1);
  for (int i = 0; i < 10000 && !pending(); ++i) sleepUntil(CLOCK_MONOTONIC, now(CLOCK_MONOTONIC) + kMs);
  REQUIRE(pending());
  control::TimerSlot s{};
  s.id = timer.id();
  shim::readAndStopTimer(s.id, s);
  CHECK(s.flags == 0);
  CHECK(s.valueNs == 0);
  shim::rearmTimer(s, 0);  // nothing to arm
  CHECK(timer.left() == 0);
  CHECK(timer.taken(0) == 1);  // a timer_settime would have made the kernel drop it
}

TEST_CASE("a periodic timer runs on through the freeze") {
  TestTimer timer;
  timer.arm(10000 * kMs, 10000 * kMs);
  control::TimerSlot s{};
  s.id = timer.id();
  shim::readAndStopTimer(s.id, s);
  CHECK((s.flags & control::kTimerStopped) == 0);
  CHECK(s.intervalNs == 10000 * kMs);
  CHECK(s.valueNs > 0);
  CHECK(timer.left() > 0);
}

TEST_CASE("an absolute wall-clock timer is armed again at its date") {
  TestTimer timer(CLOCK_REALTIME);
  const int64_t date = now(CLOCK_REALTIME) + 100000 * kMs;
  timer.arm(date, 0, TIMER_ABSTIME);
  control::TimerSlot s{};
  s.id = timer.id();
  s.clock = CLOCK_REALTIME;
  s.flags = control::kTimerAbsolute;
  shim::readAndStopTimer(s.id, s);
  const int64_t readAt = now(CLOCK_REALTIME);  // after the read: the date comes out late, never early
  REQUIRE((s.flags & control::kTimerStopped) != 0);
  CHECK(timer.left() == 0);
  shim::rearmTimer(s, readAt);
  const int64_t before = now(CLOCK_REALTIME);
  const int64_t left = timer.left();
  const int64_t after = now(CLOCK_REALTIME);
  CHECK(left > 0);
  CHECK(after + left >= date);                 // never before its date
  CHECK(before + left <= readAt + s.valueNs);  // at the date the read saw
}
