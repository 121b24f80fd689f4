// /proc/PID/timers: the kernel's exact text, malformed text, this process's own timers
// read back, and which clocks a timer may run on.
#include "resources/posix_timers.h"

#include <doctest/doctest.h>

#include <csignal>
#include <ctime>
#include <string>
#include <unistd.h>
#include <sys/syscall.h>

namespace mig::resources::posix_timers {
namespace {

TEST_CASE("posix timers: id, signal and value, process or thread target, clock") {
  std::vector<ProcTimer> t;
  const char* text =
      "ID: 4\nsignal: 32/0000560cb5f64460\nnotify: signal/tid.27165\nClockID: 1\n"
      "ID: 3\nsignal: 35/0000000000001234\nnotify: signal/pid.27164\nClockID: -6\n"
      "ID: 1\nsignal: 14/0000000000000000\nnotify: none/pid.27164\nClockID: 7\n";
  REQUIRE(parse(text, t) == nullptr);
  REQUIRE(t.size() == 3);
  CHECK(t[0].id == 4);
  CHECK(t[0].signo == 32);
  CHECK(t[0].value == 0x560cb5f64460ull);
  CHECK(t[0].notify == (SIGEV_SIGNAL | SIGEV_THREAD_ID));
  CHECK(t[0].target == 27165);
  CHECK(t[1].notify == SIGEV_SIGNAL);
  CHECK(t[1].clock == -6);
  CHECK(t[2].notify == SIGEV_NONE);
  CHECK(t[2].clock == CLOCK_BOOTTIME);
  t.clear();
  CHECK(parse("", t) == nullptr);
  CHECK(t.empty());
  CHECK(parse("ID: 4\nsignal: 32/0000560cb5f64460\n", t) != nullptr);
  CHECK(parse("ID: x\nsignal: 32/0\nnotify: signal/pid.1\nClockID: 1\n", t) != nullptr);
  CHECK(parse("ID: 1\nsignal: 32/0\nnotify: bell/pid.1\nClockID: 1\n", t) != nullptr);
}

TEST_CASE("this kernel lists this process's timers as the parser expects") {
  struct sigevent ev {};
  ev.sigev_notify = SIGEV_THREAD_ID;
  ev.sigev_signo = SIGRTMIN + 3;
  ev.sigev_value.sival_int = 77;
  ev._sigev_un._tid = static_cast<pid_t>(syscall(SYS_gettid));
  timer_t a, b;
  REQUIRE(timer_create(CLOCK_REALTIME, &ev, &a) == 0);
  ev.sigev_notify = SIGEV_NONE;
  REQUIRE(timer_create(CLOCK_PROCESS_CPUTIME_ID, &ev, &b) == 0);
  std::string text;
  FILE* f = fopen("/proc/self/timers", "r");
  REQUIRE(f != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
  fclose(f);
  std::vector<ProcTimer> t;
  REQUIRE(parse(text, t) == nullptr);
  int seen = 0;
  for (const ProcTimer& p : t) {
    if (p.id == static_cast<int32_t>(reinterpret_cast<intptr_t>(a))) {
      ++seen;
      CHECK(p.notify == (SIGEV_SIGNAL | SIGEV_THREAD_ID));
      CHECK(p.signo == SIGRTMIN + 3);
      CHECK(p.value == 77);
      CHECK(p.target == gettid());
      CHECK(unsupportedClock(p.clock) == nullptr);
    }
    if (p.id == static_cast<int32_t>(reinterpret_cast<intptr_t>(b))) {
      ++seen;
      CHECK(p.notify == SIGEV_NONE);
      CHECK(unsupportedClock(p.clock) == nullptr);  // glibc passes the process's CPU clock
    }
  }
  CHECK(seen == 2);
  timer_delete(a);
  timer_delete(b);
}

TEST_CASE("posix timers: thread CPU clocks and other processes' CPU clocks are refused") {
  CHECK(unsupportedClock(CLOCK_MONOTONIC) == nullptr);
  CHECK(unsupportedClock(CLOCK_BOOTTIME) == nullptr);
  CHECK(unsupportedClock(-6) == nullptr);  // this process, CPUCLOCK_SCHED
  CHECK(unsupportedClock(-2) != nullptr);  // the calling thread
  CHECK(unsupportedClock(CLOCK_THREAD_CPUTIME_ID) != nullptr);
  CHECK(unsupportedClock(static_cast<int32_t>((~4242u << 3) | 2)) != nullptr);  // process 4242
  CHECK(unsupportedClock(99) != nullptr);
}

}  // namespace
}  // namespace mig::resources::posix_timers
