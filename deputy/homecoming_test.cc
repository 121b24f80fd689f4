// The deputy's come-back table (homecoming.h): what a failed hop home's restart hands
// back to the deputy it execs again.
#include "deputy/homecoming.h"

#include <doctest/doctest.h>

#include <cstring>

namespace mig::deputy {
namespace {

kj::Array<kj::byte> bytesOf(kj::StringPtr s) { return kj::heapArray<kj::byte>(s.asBytes()); }

TEST_CASE("a come-back table reads back as written, with or without a direct link") {
  ComeBack c;
  c.deputy = kj::str("/usr/lib/mig/mig-deputy");
  c.jobId = 5503026725183787594ull;
  c.socket = kj::str("/tmp/mig 0/shadowd.sock");  // a space in the path
  c.token = kj::heapArray<kj::byte>(32);
  for (size_t i = 0; i < 32; ++i) c.token[i] = static_cast<kj::byte>(i * 7);
  c.record = bytesOf("\nrecord 3\n\0x");  // binary, with what looks like lines
  auto back = decodeComeBack(encodeComeBack(c));
  CHECK(back.deputy == c.deputy);
  CHECK(back.jobId == c.jobId);
  CHECK(back.socket == c.socket);
  CHECK(back.token == c.token);
  CHECK(back.linkFd == -1);
  CHECK(back.record == c.record);

  c.linkFd = 1017;
  c.linkKey = kj::heapArray<kj::byte>(32);
  memset(c.linkKey.begin(), 0xab, 32);
  c.linkPlaintext = true;
  c.linkLostAfterMs = 90000;
  c.record = nullptr;
  back = decodeComeBack(encodeComeBack(c));
  CHECK(back.linkFd == 1017);
  CHECK(back.linkKey == c.linkKey);
  CHECK(back.linkPlaintext);
  CHECK(back.linkLostAfterMs == 90000);
  CHECK(back.record.size() == 0);
}

TEST_CASE("a come-back table cut short or not one is refused") {
  ComeBack c;
  c.deputy = kj::str("/d");
  c.jobId = 1;
  c.socket = kj::str("/s");
  c.token = kj::heapArray<kj::byte>(32);
  auto whole = encodeComeBack(c);
  CHECK_THROWS(decodeComeBack(whole.slice(0, whole.size() - 3)));
  CHECK_THROWS(decodeComeBack(bytesOf("not a table\n")));
}

}  // namespace
}  // namespace mig::deputy
