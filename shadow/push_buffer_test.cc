// PushBuffer (push_buffer.h): reads answered from pushed bytes in order, each byte
// once, the end or the failure only after the bytes before it.
#include "shadow/push_buffer.h"

#include "rsc/marshal.h"
#include "rsc/forward_table.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>

using mig::shadow::PushBuffer;

namespace {

kj::ArrayPtr<const kj::byte> bytesOf(const char* s) { return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s), strlen(s)); }

// Reads `count` bytes from `b` as the shim would decode the reply; the result, and
// the bytes in `got`.
int64_t readFrom(PushBuffer& b, uint64_t count, std::string& got, uint64_t& taken, int32_t& error) {
  static uint64_t seq = 0;
  char buf[64] = {};
  const mig::rsc::Row& row = mig::rsc::rowOf(mig::rsc::CallId::Read);
  const int64_t args[6] = {5, reinterpret_cast<int64_t>(buf), static_cast<int64_t>(count), 0, 0, 0};
  mig::rsc::RequestHeader h{};
  h.seq = ++seq;
  h.call = static_cast<uint32_t>(mig::rsc::CallId::Read);
  memcpy(h.args, args, sizeof(args));
  auto reply = b.read(h, taken);
  const int64_t r = mig::rsc::decodeReply(row, args, h.seq, reply.begin(), reply.size(), &error);
  got.assign(buf, r > 0 ? static_cast<size_t>(r) : 0);
  return r;
}

}  // namespace

TEST_CASE("pushed bytes are read in order, each once, across chunks") {
  PushBuffer b;
  b.start(100);
  CHECK(!b.readable());
  CHECK(b.add(100, bytesOf("hello ")));
  CHECK(b.add(106, bytesOf("world")));
  CHECK(b.endOffset() == 111);
  std::string got;
  uint64_t taken;
  int32_t error;
  CHECK(readFrom(b, 4, got, taken, error) == 4);
  CHECK(got == "hell");
  CHECK(taken == 4);
  CHECK(readFrom(b, 64, got, taken, error) == 7);
  CHECK(got == "o world");
  CHECK(!b.readable());
}

TEST_CASE("bytes added again (a peek answered twice) are kept once; a gap is refused") {
  PushBuffer b;
  b.start(0);
  CHECK(b.add(0, bytesOf("abc")));
  CHECK(b.add(0, bytesOf("abcdef")));  // the first three again, three new
  CHECK(b.add(2, bytesOf("cd")));      // nothing new
  CHECK(!b.add(9, bytesOf("xyz")));    // past the end: a gap
  CHECK(b.size() == 6);
  std::string got;
  uint64_t taken;
  int32_t error;
  CHECK(readFrom(b, 64, got, taken, error) == 6);
  CHECK(got == "abcdef");
}

TEST_CASE("the end comes after the last byte, and stays") {
  PushBuffer b;
  b.start(0);
  b.add(0, bytesOf("last"));
  b.end(0);
  std::string got;
  uint64_t taken;
  int32_t error;
  CHECK(readFrom(b, 2, got, taken, error) == 2);
  CHECK(got == "la");
  CHECK(readFrom(b, 64, got, taken, error) == 2);
  CHECK(got == "st");
  CHECK(readFrom(b, 64, got, taken, error) == 0);
  CHECK(taken == 0);
  CHECK(b.readable());
  CHECK(readFrom(b, 64, got, taken, error) == 0);
}

TEST_CASE("a failure comes after the bytes before it, once, then the end") {
  PushBuffer b;
  b.start(0);
  b.add(0, bytesOf("partial"));
  b.end(ECONNRESET);
  std::string got;
  uint64_t taken;
  int32_t error;
  CHECK(readFrom(b, 64, got, taken, error) == 7);
  CHECK(got == "partial");
  CHECK(readFrom(b, 64, got, taken, error) == -1);
  CHECK(error == ECONNRESET);
  CHECK(taken == 0);
  CHECK(readFrom(b, 64, got, taken, error) == 0);
}
