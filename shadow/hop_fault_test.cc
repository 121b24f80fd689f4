// MIG_FAULT=hop:STEP:ACTION: what shadowd takes, and the one line for what it refuses.
#include "shadow/hop_fault.h"

#include <doctest/doctest.h>

namespace mig::shadow {
namespace {

TEST_CASE("hop fault: every step with crash or error is taken") {
  for (const char* step : kHopSteps) {
    kj::String why;
    auto crash = parseHopFault(kj::str("hop:", step, ":crash").cStr(), why);
    CHECK(why.size() == 0);
    CHECK(crash.action == HopFaultAction::CRASH);
    CHECK(crash.step == step);
    auto error = parseHopFault(kj::str("hop:", step, ":error").cStr(), why);
    CHECK(why.size() == 0);
    CHECK(error.action == HopFaultAction::ERROR);
  }
}

TEST_CASE("hop fault: unset, or another part's value, is no fault") {
  kj::String why;
  CHECK(parseHopFault(nullptr, why).action == HopFaultAction::NONE);
  CHECK(parseHopFault("deputy-watch", why).action == HopFaultAction::NONE);
  CHECK(why.size() == 0);
}

TEST_CASE("hop fault: a bad value is one line naming what is wrong") {
  kj::String why;
  CHECK(parseHopFault("hop:nope:crash", why).action == HopFaultAction::NONE);
  CHECK(why.startsWith("MIG_FAULT=hop:nope:crash: no hop step 'nope' (steps: deputy-start, send-login, "));
  CHECK(parseHopFault("hop:recv-done:boom", why).action == HopFaultAction::NONE);
  CHECK(why == "MIG_FAULT=hop:recv-done:boom: the action is crash or error, not 'boom'");
  CHECK(parseHopFault("hop:recv-done", why).action == HopFaultAction::NONE);
  CHECK(why == "MIG_FAULT=hop:recv-done: expected hop:STEP:crash or hop:STEP:error");
  for (const char* bad : {"hop:nope:crash", "hop:recv-done:boom", "hop:recv-done"}) {
    parseHopFault(bad, why);
    CHECK(strchr(why.cStr(), '\n') == nullptr);
  }
}

}  // namespace
}  // namespace mig::shadow
