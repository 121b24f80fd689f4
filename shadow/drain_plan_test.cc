// planDrain (drain_plan.h): a tree moves whole or not at all, each guest once, in the
// drain's order.
#include "shadow/drain_plan.h"

#include <doctest/doctest.h>

#include <set>

namespace mig::shadow {
namespace {

kj::Vector<uint64_t> ids(std::initializer_list<uint64_t> l) {
  kj::Vector<uint64_t> v;
  for (uint64_t x : l) v.add(x);
  return v;
}

TEST_CASE("planDrain: guests alone stay single moves, in order") {
  uint64_t guests[] = {4, 9};
  kj::Vector<uint64_t> trees[2];
  auto plan = planDrain(guests, trees, [](uint64_t) { return true; });
  REQUIRE(plan.size() == 2);
  CHECK((plan[0].kind == DrainStep::Kind::ALONE && plan[0].guest == 0));
  CHECK((plan[1].kind == DrainStep::Kind::ALONE && plan[1].guest == 1));
}

TEST_CASE("planDrain: a tree all here is one move of its root, at its first guest's place") {
  // Guest order: a child first, then a job alone, then the root and the other child.
  uint64_t guests[] = {12, 30, 10, 11};
  kj::Vector<uint64_t> trees[] = {ids({10, 11, 12}), {}, ids({10, 11, 12}), ids({10, 11, 12})};
  auto plan = planDrain(guests, trees, [](uint64_t) { return true; });
  REQUIRE(plan.size() == 2);
  CHECK(plan[0].kind == DrainStep::Kind::TREE);
  CHECK(plan[0].id == 10);
  REQUIRE(plan[0].members.size() == 2);
  CHECK((plan[0].members[0] == 11 && plan[0].members[1] == 12));
  CHECK((plan[1].kind == DrainStep::Kind::ALONE && plan[1].guest == 1));
}

TEST_CASE("planDrain: a member whose root runs elsewhere is refused, never moved alone") {
  uint64_t guests[] = {11, 12, 30};
  kj::Vector<uint64_t> trees[] = {ids({10, 11, 12}), ids({10, 11, 12}), {}};
  auto plan = planDrain(guests, trees, [](uint64_t id) { return id != 10; });
  REQUIRE(plan.size() == 3);
  CHECK((plan[0].kind == DrainStep::Kind::REFUSED && plan[0].guest == 0 && plan[0].away == 0));
  CHECK((plan[1].kind == DrainStep::Kind::REFUSED && plan[1].guest == 1 && plan[1].away == 0));
  CHECK((plan[2].kind == DrainStep::Kind::ALONE && plan[2].guest == 2));
}

TEST_CASE("planDrain: jobs at home (no id) each stay a move of their own") {
  uint64_t guests[] = {0, 0, 5};
  kj::Vector<uint64_t> trees[3];
  auto plan = planDrain(guests, trees, [](uint64_t) { return true; });
  REQUIRE(plan.size() == 3);
  for (size_t i = 0; i < 3; ++i) CHECK((plan[i].kind == DrainStep::Kind::ALONE && plan[i].guest == i));
}

TEST_CASE("planDrain: a root here with a member elsewhere (or moving) is refused too") {
  uint64_t guests[] = {10, 11};
  kj::Vector<uint64_t> trees[] = {ids({10, 11, 12}), ids({10, 11, 12})};
  auto plan = planDrain(guests, trees, [](uint64_t id) { return id != 12; });
  REQUIRE(plan.size() == 2);
  std::set<size_t> refused;
  for (auto& s : plan) {
    CHECK(s.kind == DrainStep::Kind::REFUSED);
    CHECK(s.away == 2);
    refused.insert(s.guest);
  }
  CHECK(refused == std::set<size_t>{0, 1});
}

}  // namespace
}  // namespace mig::shadow
