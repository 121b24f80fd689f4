// formatHopTimes: each phase the gap since the mark before, the first mark the start.
#include "shadow/hop_times.h"

#include <doctest/doctest.h>

namespace mig::shadow {

TEST_CASE("a hop's breakdown line names each phase with the time since the mark before") {
  HopMark marks[] = {{"start", 1000000}, {"park", 1001500}, {"capture", 1004000}, {"commit", 1004250}};
  CHECK(formatHopTimes("send post-copy", marks) ==
        "send post-copy at 1000000 us: park 1.500 ms, capture 2.500 ms, commit 0.250 ms, total 4.250 ms");
}

TEST_CASE("a clock set back between two marks gives 0, not a wrapped gap") {
  HopMark marks[] = {{"start", 5000}, {"a", 4000}, {"b", 6000}};
  CHECK(formatHopTimes("restart", marks) == "restart at 5000 us: a 0.000 ms, b 2.000 ms, total 1.000 ms");
}

TEST_CASE("no marks: said so") {
  CHECK(formatHopTimes("restart", nullptr) == "restart: no marks");
}

}  // namespace mig::shadow
