// Unit tests of group_side.h: where a moved process's wait for a process group looks.
#include "shim/forward/group_side.h"

#include <doctest/doctest.h>

namespace mig::forward {
namespace {

constexpr pid_t kSelf = 300, kChildBornHere = 4194304 + 77, kOwnGroupAtHome = 250, kOtherGroup = 260;

GroupSide side(pid_t pgid, bool bornAway = false, int* homeAsked = nullptr) {
  return groupSide(
      pgid, bornAway, kSelf, [](pid_t p) { return p == kChildBornHere; },
      [homeAsked](pid_t p) {
        if (homeAsked != nullptr) ++*homeAsked;
        return p == kOwnGroupAtHome;
      });
}

TEST_CASE("the caller's own group is looked for here and at home") {
  int asked = 0;
  CHECK(side(kSelf, false, &asked) == GroupSide::Both);  // it leads its group
  CHECK(asked == 0);                                     // no round trip for that
  CHECK(side(kOwnGroupAtHome, false, &asked) == GroupSide::Both);  // a member of another's group
  CHECK(asked == 1);
}

TEST_CASE("another group at home is home's; a child's born here is this host's") {
  CHECK(side(kOtherGroup) == GroupSide::Home);
  int asked = 0;
  CHECK(side(kChildBornHere, false, &asked) == GroupSide::Here);
  CHECK(asked == 0);
}

TEST_CASE("a child born here has all its groups here") {
  int asked = 0;
  CHECK(side(kOtherGroup, true, &asked) == GroupSide::Here);
  CHECK(side(kOwnGroupAtHome, true, &asked) == GroupSide::Here);
  CHECK(asked == 0);
}

}  // namespace
}  // namespace mig::forward
