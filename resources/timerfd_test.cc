// timerfd fdinfo: the kernel's exact text, malformed lines, and a real timerfd read back.
#include "resources/timerfd.h"
#include "resources/fdinfo_test_util.h"

#include <ctime>
#include <sys/timerfd.h>

namespace mig::resources::timerfd {
namespace {

TEST_CASE("timerfd: clock, ticks, octal settime flags, it_value and it_interval") {
  Info t;
  const char* text = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1044\nclockid: 1\nticks: 7\n"
                     "settime flags: 03\nit_value: (4, 999991105)\nit_interval: (0, 10000000)\n";
  REQUIRE(parse(text, t) == nullptr);
  CHECK(t.clockid == CLOCK_MONOTONIC);
  CHECK(t.ticks == 7);
  CHECK(t.settimeFlags == (TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET));
  CHECK(t.valueNs == 4999991105ll);
  CHECK(t.intervalNs == 10000000);
  CHECK(parse("clockid: 1\nticks: 0\nsettime flags: 00\nit_value: (0, 0)\n", t) != nullptr);
  CHECK(parse("clockid: 1\nticks: 0\nsettime flags: 00\nit_value: (0, 1000000000)\nit_interval: (0, 0)\n", t) !=
        nullptr);
  CHECK(parse("clockid: 1\nticks: -1\nsettime flags: 00\nit_value: (0, 0)\nit_interval: (0, 0)\n", t) != nullptr);
}

TEST_CASE("this kernel's fdinfo of a real timerfd reads back what was set") {
  int t = timerfd_create(CLOCK_BOOTTIME, TFD_CLOEXEC);
  REQUIRE(t >= 0);
  struct itimerspec its = {{2, 500}, {100, 0}};
  REQUIRE(timerfd_settime(t, 0, &its, nullptr) == 0);
  Info tf;
  REQUIRE(parse(testing::ownFdinfo(t), tf) == nullptr);
  CHECK(tf.clockid == CLOCK_BOOTTIME);
  CHECK(tf.ticks == 0);
  CHECK(tf.intervalNs == 2000000500ll);
  CHECK(tf.valueNs > 90ll * 1000000000);
  CHECK(tf.valueNs <= 100ll * 1000000000);
  ::close(t);
}

}  // namespace
}  // namespace mig::resources::timerfd
