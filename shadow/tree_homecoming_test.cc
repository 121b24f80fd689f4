// Which members of a moved tree come home into their deputies, and the sender's all-or-none.
#include "shadow/tree_homecoming.h"

#include <doctest/doctest.h>

namespace mig::shadow {
namespace {

TEST_CASE("tree homecoming: a job that never moved with a tree comes home local") {
  TreeRecordFacts one[] = {{7, 0, true, false, true}};
  CHECK(memberComesHomeLocal(kj::arrayPtr(one, 1), 7));
  CHECK_FALSE(memberComesHomeLocal(kj::arrayPtr(one, 1), 8));  // no record: not ours
  TreeRecordFacts here[] = {{7, 0, true, false, false}};
  CHECK_FALSE(memberComesHomeLocal(kj::arrayPtr(here, 1), 7));  // not away: nothing comes home
}

TEST_CASE("tree homecoming: every member of a tree hop comes home local") {
  // root 10, members 11 and 12, all away and migrating together; 20 another job.
  TreeRecordFacts r[] = {{10, 10, true, false, true},
                         {11, 10, true, false, true},
                         {12, 10, true, false, true},
                         {20, 0, false, false, true}};
  for (uint64_t id : {10, 11, 12}) CHECK(memberComesHomeLocal(kj::arrayPtr(r, 4), id));
}

TEST_CASE("tree homecoming: a member moved alone keeps its deputy") {
  TreeRecordFacts r[] = {{10, 10, false, false, true}, {11, 10, true, false, true}, {12, 10, false, false, true}};
  CHECK_FALSE(memberComesHomeLocal(kj::arrayPtr(r, 3), 11));
  // ...and a member already home (moved back alone) keeps the rest of the tree from
  // counting as one hop: its tree is not away whole.
  TreeRecordFacts back[] = {{10, 10, true, false, true}, {11, 10, false, false, false}};
  CHECK_FALSE(memberComesHomeLocal(kj::arrayPtr(back, 2), 10));
}

TEST_CASE("tree homecoming: ended members do not count") {
  TreeRecordFacts r[] = {{10, 10, true, false, true}, {11, 10, false, true, true}, {12, 10, true, false, true}};
  CHECK(memberComesHomeLocal(kj::arrayPtr(r, 3), 10));
  CHECK(memberComesHomeLocal(kj::arrayPtr(r, 3), 12));
}

TEST_CASE("tree homecoming: the sender takes all or none") {
  bool none[] = {false, false, false};
  bool all[] = {true, true, true};
  bool mixed[] = {true, false, true};
  CHECK(treeHomecoming(kj::arrayPtr(none, 3)) == TreeHomecoming::NONE);
  CHECK(treeHomecoming(kj::arrayPtr(all, 3)) == TreeHomecoming::ALL);
  CHECK(treeHomecoming(kj::arrayPtr(mixed, 3)) == TreeHomecoming::MIXED);
  bool one[] = {true};
  CHECK(treeHomecoming(kj::arrayPtr(one, 1)) == TreeHomecoming::ALL);
}

TEST_CASE("tree homecoming: the tree goes once every member is ready, not before") {
  TreeGoTally t(3);
  CHECK(t.ready(100) == TreeGoTally::Step::WAIT);
  CHECK(t.ready(100) == TreeGoTally::Step::WAIT);  // the same member twice counts once
  CHECK(t.ready(101) == TreeGoTally::Step::WAIT);
  CHECK(t.ready(102) == TreeGoTally::Step::GO);
  CHECK(t.failed() == TreeGoTally::Step::GO);  // past the point of no return: nothing to undo
  CHECK(t.decided() == TreeGoTally::Step::GO);
}

TEST_CASE("tree homecoming: one member's failure calls every member's return off") {
  TreeGoTally t(3);
  CHECK(t.ready(100) == TreeGoTally::Step::WAIT);
  CHECK(t.failed() == TreeGoTally::Step::CALL_OFF);
  CHECK(t.ready(101) == TreeGoTally::Step::CALL_OFF);  // ready later: called off too
  CHECK(t.ready(102) == TreeGoTally::Step::CALL_OFF);
  CHECK(t.failed() == TreeGoTally::Step::CALL_OFF);
}

}  // namespace
}  // namespace mig::shadow
