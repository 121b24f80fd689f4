// The NTP-style offset arithmetic of a job's home clock (clock_sample.h): the
// middle of the exchange, the fastest exchange, and noise taken as no offset.
#include "shadow/clock_sample.h"

#include <doctest/doctest.h>

using mig::shadow::bestOffsetNs;
using mig::shadow::ClockSample;

TEST_CASE("a sample's offset takes the remote reading to be from half-way through") {
  // Sent at 1000, answered at 1100 with remote 5050: remote is 4000 ahead.
  ClockSample s{1000, 5050, 1100};
  CHECK(s.roundTripNs() == 100);
  CHECK(s.offsetNs() == 4000);
  // A remote clock behind ours gives a negative offset.
  CHECK(ClockSample{1000000, 400050, 1000100}.offsetNs() == -600000);
}

TEST_CASE("the sample with the shortest round trip wins") {
  const int64_t hour = 3600ll * 1000000000;
  ClockSample samples[] = {
      {0, hour + 900, 1000},              // slow reply: offset off by 400
      {2000, 2000 + hour + 10, 2020},     // fastest
      {3000, 3000 + hour + 100, 3200},
  };
  CHECK(bestOffsetNs(samples) == hour);
  CHECK(bestOffsetNs(kj::ArrayPtr<const ClockSample>(samples, 1)) == hour + 400);
  CHECK(bestOffsetNs(nullptr) == 0);
}

TEST_CASE("an offset within the measurement's uncertainty is no offset") {
  // Round trip 100: the remote reading may be from anywhere in it, +-50 of the middle.
  ClockSample within[] = {{1000, 1050 + 50, 1100}};
  CHECK(bestOffsetNs(within) == 0);
  ClockSample below[] = {{1000, 1050 - 50, 1100}};
  CHECK(bestOffsetNs(below) == 0);
  ClockSample beyond[] = {{1000, 1050 + 51, 1100}};
  CHECK(bestOffsetNs(beyond) == 51);
  ClockSample beyondBelow[] = {{1000, 1050 - 51, 1100}};
  CHECK(bestOffsetNs(beyondBelow) == -51);
}
