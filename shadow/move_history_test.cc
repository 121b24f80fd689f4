// What `migctl history` gets from MoveHistory: the moves in the order asked, at
// most kKept of them, the oldest dropped first, every field as recorded.
#include "shadow/move_history.h"

#include <capnp/message.h>
#include <doctest/doctest.h>

namespace mig::shadow {
namespace {

Move move(int pid, bool ok) {
  Move m;
  m.time = 1000.0 + pid;
  m.pid = pid;
  m.jobId = 7;
  m.from = kj::str("a");
  m.to = kj::str("b");
  m.network = rpc::NetworkPolicy::REBIND;
  m.ok = ok;
  m.freezeMs = ok ? 12.5 : 0;
  m.error = kj::str(ok ? "" : "login refused: wrong cluster key");
  m.command = kj::str("./job ", pid);
  return m;
}

TEST_CASE("history: every field of a move as recorded, in order") {
  MoveHistory h;
  h.add(move(1, true));
  h.add(move(2, false));
  capnp::MallocMessageBuilder msg;
  auto list = msg.initRoot<rpc::Local::HistoryResults>().initMoves(static_cast<unsigned>(h.size()));
  h.fill(list);
  REQUIRE(list.size() == 2);
  CHECK(list[0].getPid() == 1);
  CHECK(list[0].getTime() == 1001.0);
  CHECK(list[0].getJobId() == 7);
  CHECK(list[0].getFrom() == "a");
  CHECK(list[0].getTo() == "b");
  CHECK(list[0].getNetwork() == rpc::NetworkPolicy::REBIND);
  CHECK(list[0].getOk());
  CHECK(list[0].getFreezeMs() == 12.5);
  CHECK(list[0].getError() == "");
  CHECK(list[0].getCommand() == "./job 1");
  CHECK(list[1].getPid() == 2);
  CHECK_FALSE(list[1].getOk());
  CHECK(list[1].getError() == "login refused: wrong cluster key");
}

TEST_CASE("history: past kKept moves the oldest go first") {
  MoveHistory h;
  for (int i = 1; i <= static_cast<int>(MoveHistory::kKept) + 50; ++i) h.add(move(i, i % 2 == 0));
  REQUIRE(h.size() == MoveHistory::kKept);
  capnp::MallocMessageBuilder msg;
  auto list = msg.initRoot<rpc::Local::HistoryResults>().initMoves(static_cast<unsigned>(h.size()));
  h.fill(list);
  CHECK(list[0].getPid() == 51);
  CHECK(list[list.size() - 1].getPid() == static_cast<int>(MoveHistory::kKept) + 50);
  for (unsigned i = 1; i < list.size(); ++i) CHECK(list[i].getPid() == list[i - 1].getPid() + 1);
}

}  // namespace
}  // namespace mig::shadow
