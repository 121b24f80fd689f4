// Answered (answered.h): a call that comes again after it ran is answered from the
// time it ran, whichever way it came again, and nothing else is taken for it.
#include "deputy/answered.h"

#include <doctest/doctest.h>

#include <cstring>

namespace mig::deputy {
namespace {

rsc::RequestHeader request(uint32_t thread, uint64_t seq, bool pipelined = false, uint64_t order = 0) {
  rsc::RequestHeader h{};
  h.magic = rsc::kRequestMagic;
  h.length = sizeof(h);
  h.thread = thread;
  h.seq = seq;
  h.order = order;
  h.flags = pipelined ? rsc::kNoReply : 0;
  return h;
}

kj::Array<kj::byte> reply(kj::byte fill, size_t n = 8) {
  auto r = kj::heapArray<kj::byte>(n);
  memset(r.begin(), fill, n);
  return r;
}

TEST_CASE("a call that ran is answered again from what it answered, once per thread") {
  Answered a;
  kj::ArrayPtr<const kj::byte> got;
  CHECK_FALSE(a.ran(request(1, 5), got));
  a.done(request(1, 5), reply(0xaa));
  REQUIRE(a.ran(request(1, 5), got));  // the link broke before the answer got back
  CHECK(got.size() == 8);
  CHECK(got[0] == 0xaa);
  CHECK_FALSE(a.ran(request(2, 5), got));  // another thread's seq 5 is another call
  CHECK_FALSE(a.ran(request(1, 6), got));  // the thread's next call is new
  a.done(request(1, 6), reply(0xbb));
  CHECK_FALSE(a.ran(request(1, 5), got));  // the thread read that answer: it cannot come again
  REQUIRE(a.ran(request(1, 6), got));
  CHECK(got[0] == 0xbb);
  CHECK(a.lastByThread().size() == 1);
  CHECK(a.lastByThread().at(1).seq == 6);
}

TEST_CASE("the last batches of pipelined writes are kept apart from their threads' waited calls") {
  Answered a;
  kj::ArrayPtr<const kj::byte> got;
  a.done(request(1, 10, true, 3), kj::heapArray<kj::byte>(0));  // ran, no failure
  a.done(request(1, 11), reply(0xcc));                         // the thread's next call, done first
  REQUIRE(a.ran(request(1, 10, true, 3), got));                // the batch sent again
  CHECK(got.size() == 0);
  REQUIRE(a.ran(request(1, 11), got));
  CHECK(got[0] == 0xcc);
  // A failed batch is answered with its failure again.
  a.done(request(2, 4, true, 4), reply(0xee, 32));
  REQUIRE(a.ran(request(2, 4, true, 4), got));
  CHECK(got.size() == 32);
  // Several batches may be on their way when a link breaks: the one before is kept too.
  REQUIRE(a.ran(request(1, 10, true, 3), got));
  CHECK(got.size() == 0);
  // A batch is named by its order as well: a program exec'd numbers its calls from 1
  // again, so the same (thread, seq) with a later order is a new batch.
  CHECK_FALSE(a.ran(request(1, 10, true, 9), got));
  // A waited call with the batch's (thread, seq) is not taken for it.
  CHECK_FALSE(a.ran(request(2, 4), got));
  // Pipelined writes are not carried home as a thread's last call.
  CHECK(a.lastByThread().size() == 1);
  // Only the last 2 x kWritesInFlight: older ones cannot come again.
  for (uint64_t i = 0; i < 2 * rsc::kWritesInFlight; ++i) a.done(request(3, 20 + i, true, 5 + i), kj::heapArray<kj::byte>(0));
  CHECK_FALSE(a.ran(request(1, 10, true, 3), got));
  CHECK(a.ran(request(3, 20, true, 5), got));
}

TEST_CASE("a cancel that comes before its call answers the call when it comes; one that crossed its answer changes nothing") {
  Answered a;
  kj::ArrayPtr<const kj::byte> got;
  a.done(request(1, 5), reply(0xaa));
  CHECK(a.cancelBeforeRun(1, 6, reply(0xee)));  // call 6 still behind the job's writes
  REQUIRE(a.ran(request(1, 6), got));           // it comes: answered from the cancel, not run
  CHECK(got[0] == 0xee);
  CHECK_FALSE(a.cancelBeforeRun(1, 6, reply(0xcc)));  // cancelled again: the first answer stands
  REQUIRE(a.ran(request(1, 6), got));
  CHECK(got[0] == 0xee);
  a.done(request(1, 7), reply(0xbb));
  CHECK_FALSE(a.cancelBeforeRun(1, 7, reply(0xee)));  // crossed call 7's answer
  CHECK_FALSE(a.cancelBeforeRun(1, 6, reply(0xee)));  // an old one
  REQUIRE(a.ran(request(1, 7), got));
  CHECK(got[0] == 0xbb);
  CHECK(a.cancelBeforeRun(2, 1, reply(0xee)));  // another thread's first call
  CHECK(a.ran(request(2, 1), got));
}

TEST_CASE("a read taken late (pushed ahead, its batch sent again) does not hide the thread's newer call") {
  Answered a;
  kj::ArrayPtr<const kj::byte> got;
  a.done(request(3, 9), reply(0xcc));  // the thread went on: its call 9 ran
  a.takenLate(request(3, 8), reply(0xdd));  // its read 8, served where it runs, taken at home now
  REQUIRE(a.ran(request(3, 9), got));  // call 9 sent again is still answered from its run
  CHECK(got[0] == 0xcc);
}

TEST_CASE("a program a process exec'd numbers its calls from 1 again under the same thread id: each is kept") {
  Answered a;
  kj::ArrayPtr<const kj::byte> got;
  a.done(request(4, 50), reply(0xaa));  // the process before its exec
  a.done(request(4, 1), reply(0xbb));   // the program it exec'd (same PID, same thread id)
  REQUIRE(a.ran(request(4, 1), got));   // its answer is there to send
  CHECK(got[0] == 0xbb);
}

}  // namespace
}  // namespace mig::deputy
