// settleChildren: looks again until no child is left, at most the bound, and tells
// transient children (they came and went) from one that stays; the refusal's line.
#include "shadow/settle_children.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace mig::shadow {
namespace {

struct Child {
  pid_t pid;
  bool zombie;
  std::string command;
};

// A look that answers the given PID sets in turn (the last one from then on).
struct Script {
  std::vector<std::vector<pid_t>> looks;
  unsigned taken = 0;
  unsigned pauses = 0;
  kj::Vector<Child> operator()() {
    auto& at = looks[taken < looks.size() ? taken : looks.size() - 1];
    ++taken;
    kj::Vector<Child> out;
    for (pid_t p : at) out.add(Child{p, false, "sh"});
    return out;
  }
};

TEST_CASE("settle children: no child is one look, no pause") {
  Script s{{{}}};
  auto r = settleChildren([&]() { return s(); }, [&]() { ++s.pauses; });
  CHECK(r.left.size() == 0);
  CHECK_FALSE(r.cameAndWent);
  CHECK(s.taken == 1);
  CHECK(s.pauses == 0);
}

TEST_CASE("settle children: a child about to end is waited for") {
  Script s{{{7}, {7}, {}}};
  auto r = settleChildren([&]() { return s(); }, [&]() { ++s.pauses; });
  CHECK(r.left.size() == 0);
  CHECK(s.taken == 3);
  CHECK(s.pauses == 2);
}

TEST_CASE("settle children: one that stays is left after the bound, not transient") {
  Script s{{{7}}};
  auto r = settleChildren([&]() { return s(); }, [&]() { ++s.pauses; }, 5);
  REQUIRE(r.left.size() == 1);
  CHECK(r.left[0].pid == 7);
  CHECK_FALSE(r.cameAndWent);
  CHECK(s.taken == 5);
  CHECK(s.pauses == 4);
}

TEST_CASE("settle children: children that come and go are transient") {
  Script s{{{7}, {8}, {9}}};
  auto r = settleChildren([&]() { return s(); }, [&]() { ++s.pauses; }, 4);
  REQUIRE(r.left.size() == 1);
  CHECK(r.left[0].pid == 9);
  CHECK(r.cameAndWent);
  // The same set in another order is no change; one gone is.
  Script t{{{7, 8}, {8, 7}, {8}}};
  auto u = settleChildren([&]() { return t(); }, [&]() {}, 2);
  CHECK_FALSE(u.cameAndWent);
  Script t2{{{7, 8}, {8, 7}, {8}}};
  auto v = settleChildren([&]() { return t2(); }, [&]() {}, 3);
  REQUIRE(v.left.size() == 1);
  CHECK(v.cameAndWent);
}

TEST_CASE("settle children: the refusal says try again only for transient children") {
  kj::Vector<Child> left;
  left.add(Child{4194400, true, "true"});
  auto stays = awayChildrenRefusal(12, 0, left, false, false, BornAwayRefused::home);
  CHECK(std::string(stays.cStr()).find("cannot move PID 12: it has 1 child born on this host (true (ended, not yet waited for))") == 0);
  CHECK(std::string(stays.cStr()).find("try again") == std::string::npos);
  CHECK(std::string(stays.cStr()).find("nothing was frozen, the job runs on where it was") != std::string::npos);
  CHECK(std::string(stays.cStr()).find("cannot come home with it yet") != std::string::npos);
  CHECK(std::string(stays.cStr()).find("move it home once they have ended and been waited for") != std::string::npos);
  auto member = awayChildrenRefusal(12, 15, left, false, false, BornAwayRefused::home);
  CHECK(std::string(member.cStr()).find("cannot move PID 12 with its children: its process 15 has 1 child") == 0);
  auto transient = awayChildrenRefusal(12, 0, left, true, false, BornAwayRefused::home);
  CHECK(std::string(transient.cStr()).find("its children come and go: try again") != std::string::npos);
  auto late = awayChildrenRefusal(12, 15, left, false, true, BornAwayRefused::lateStart);
  CHECK(std::string(late.cStr()).find("cannot move PID 12 with its children: its process 15 has 1 child") == 0);
  CHECK(std::string(late.cStr()).find("the hop was aborted, the job runs on where it was") != std::string::npos);
  CHECK(std::string(late.cStr()).find("try again") != std::string::npos);
  CHECK(std::string(late.cStr()).find("they were started as it was frozen: try again") != std::string::npos);
  auto started = awayChildrenRefusal(12, 0, left, false, false, BornAwayRefused::lateStart);
  CHECK(std::string(started.cStr()).find("move with it stop-and-copy only, and these were started as it began to move") !=
        std::string::npos);
  CHECK(std::string(started.cStr()).find("try again") != std::string::npos);
  CHECK(std::string(late.cStr()).find("\n") == std::string::npos);
}

TEST_CASE("born away: the first child that cannot come along is a live one whose shim does not answer") {
  kj::Vector<Child> children;
  children.add(Child{4194400, true, "zombie"});    // no shim, ended: its status moves
  children.add(Child{4194401, false, "python3"});  // under the shim
  children.add(Child{4194402, false, "leaving"});  // no answer, but gone by now
  children.add(Child{4194403, false, "static"});   // no answer, still runs
  auto answers = [](pid_t pid) { return pid == 4194401; };
  auto runs = [](pid_t pid) { return pid != 4194402; };
  auto first = firstNotUnderShim(children, answers, runs);
  REQUIRE(first != nullptr);
  CHECK(first->pid == 4194403);
  children.removeLast();
  CHECK(firstNotUnderShim(children, answers, runs) == nullptr);
}

}  // namespace
}  // namespace mig::shadow
