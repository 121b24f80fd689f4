// Which members of a moved tree come home into their deputies, and the sender's all-or-none.
#include "shadow/tree_homecoming.h"
#include "shadow/tree_members.h"

#include <doctest/doctest.h>

#include <string>

namespace mig::shadow {
namespace {

TEST_CASE("tree members: the hop's member list, with and without each one's PID at home") {
  const std::string token(64, 'a');
  auto text = kj::str(" 12:34:", token.c_str(), " 13:35:", token.c_str(), ":7 ");
  KJ_IF_MAYBE(m, parseTreeMembers(text.cStr())) {
    REQUIRE(m->size() == 2);
    CHECK((*m)[0].pid == 12);
    CHECK((*m)[0].vpid == 12);  // no VPID: the same
    CHECK((*m)[0].jobId == 34);
    CHECK((*m)[0].token.size() == 32);
    CHECK((*m)[0].token[0] == 0xaa);
    CHECK((*m)[1].pid == 13);
    CHECK((*m)[1].vpid == 7);
  } else {
    FAIL("a well-formed list was refused");
  }
  KJ_IF_MAYBE(none, parseTreeMembers("")) { CHECK(none->size() == 0); } else { FAIL("an empty list was refused"); }
  CHECK(parseTreeMembers("12:34") == nullptr);
  CHECK(parseTreeMembers(kj::str("12:34:", std::string(62, 'a').c_str()).cStr()) == nullptr);  // short token
  CHECK(parseTreeMembers(kj::str("12:34:", std::string(64, 'g').c_str()).cStr()) == nullptr);  // not hex
  CHECK(parseTreeMembers(kj::str("0:34:", token.c_str()).cStr()) == nullptr);
  CHECK(parseTreeMembers(kj::str("12:34:", token.c_str(), "x").cStr()) == nullptr);
}

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
