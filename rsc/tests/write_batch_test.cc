// The relay's handling of pipelined writes: which requests count as one, and that
// joined writes run at home as the writes they were made of, in order. And which
// requests are cancels (rsc::isCancel), which it takes while a call runs.
#include "image/image_test_util.h"
#include "rsc/dispatch.h"
#include "rsc/forward_table.h"
#include "rsc/marshal.h"
#include "rsc/wire.h"
#include "rsc/write_batch.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace mig::rsc {
namespace {

std::vector<kj::byte> writeRequest(int fd, const std::string& data, uint64_t seq, uint64_t order,
                                   uint32_t flags = kNoReply) {
  int64_t args[6] = {fd, reinterpret_cast<int64_t>(data.data()), static_cast<int64_t>(data.size())};
  const Row* row = findRow(SYS_write, args);
  REQUIRE(row != nullptr);
  std::vector<kj::byte> buf(kMaxMessage);
  int64_t n = encodeRequest(*row, args, seq, flags, buf.data(), buf.size(), order);
  REQUIRE(n > 0);
  buf.resize(static_cast<size_t>(n));
  return buf;
}

kj::ArrayPtr<kj::byte> view(std::vector<kj::byte>& v) { return kj::arrayPtr(v.data(), v.size()); }

std::vector<kj::byte> pwriteRequest(int fd, const std::string& data, int64_t offset, uint64_t seq, uint64_t order,
                                    uint32_t flags = kNoReply) {
  int64_t args[6] = {fd, reinterpret_cast<int64_t>(data.data()), static_cast<int64_t>(data.size()), offset};
  const Row& row = rowOf(CallId::Pwrite64);
  std::vector<kj::byte> buf(kMaxMessage);
  int64_t n = encodeRequest(row, args, seq, flags, buf.data(), buf.size(), order);
  REQUIRE(n > 0);
  buf.resize(static_cast<size_t>(n));
  return buf;
}

std::string contents(const std::string& path) {
  std::ifstream in(path);
  std::stringstream got;
  got << in.rdbuf();
  return got.str();
}

TEST_CASE("write batch: a pipelined write is recognised with its fd, seq, order and size") {
  auto r = writeRequest(7, "hello", 3, 41);
  PipelinedWrite w{};
  REQUIRE(parsePipelinedWrite(view(r), w));
  CHECK(w.fd == 7);
  CHECK(w.seq == 3);
  CHECK(w.order == 41);
  CHECK(w.count == 5);
}

TEST_CASE("write batch: anything else is not a pipelined write") {
  PipelinedWrite w{};
  auto sync = writeRequest(7, "hello", 3, 41, 0);
  CHECK_FALSE(parsePipelinedWrite(view(sync), w));
  auto r = writeRequest(7, "hello", 3, 41);
  auto cut = r;
  cut.pop_back();
  CHECK_FALSE(parsePipelinedWrite(view(cut), w));
  auto lying = r;  // payload count disagrees with args[2]
  lying[sizeof(RequestHeader)] = 4;
  CHECK_FALSE(parsePipelinedWrite(view(lying), w));
  int64_t args[6] = {7, 0, 0};
  const Row* lseek = rowById(static_cast<uint32_t>(CallId::Lseek));
  std::vector<kj::byte> buf(4096);
  int64_t n = encodeRequest(*lseek, args, 1, kNoReply, buf.data(), buf.size(), 1);
  buf.resize(static_cast<size_t>(n));
  CHECK_FALSE(parsePipelinedWrite(view(buf), w));
}

TEST_CASE("a cancel is a request header alone with kCancel; a call or a pipelined write is none") {
  RequestHeader h{};
  h.magic = kRequestMagic;
  h.length = sizeof(h);
  h.seq = 9;
  h.flags = kCancel;
  CHECK(isCancel(h));
  RequestHeader longer = h;  // a cancel carries nothing more: anything else is not one
  longer.length = sizeof(h) + 8;
  CHECK_FALSE(isCancel(longer));
  RequestHeader wrongMagic = h;
  wrongMagic.magic = kReplyMagic;
  CHECK_FALSE(isCancel(wrongMagic));
  for (auto r : {writeRequest(7, "hello", 3, 41), writeRequest(7, "hello", 3, 41, 0)}) {
    RequestHeader call;
    memcpy(&call, r.data(), sizeof(call));
    CHECK_FALSE(isCancel(call));
  }
}

TEST_CASE("write batch: joined writes run as one, bytes in order") {
  image::testing::TempDir dir;
  int fd = ::open(dir.file("out").c_str(), O_WRONLY | O_CREAT, 0600);
  REQUIRE(fd >= 0);
  std::vector<std::vector<kj::byte>> parts = {writeRequest(fd, "one ", 1, 10), writeRequest(fd, "", 2, 11),
                                              writeRequest(fd, "three", 3, 12)};
  std::vector<kj::ArrayPtr<const kj::byte>> views;
  for (auto& p : parts) views.push_back(kj::arrayPtr(p.data(), p.size()));
  kj::Array<kj::byte> joined = joinWrites(kj::arrayPtr(views.data(), views.size()));
  PipelinedWrite w{};
  REQUIRE(parsePipelinedWrite(joined, w));
  CHECK(w.count == 9);
  CHECK(w.seq == 3);
  CHECK(w.order == 12);
  Dispatcher d;
  CHECK(d.call(joined).size() == 0);  // success: nothing to answer
  ::close(fd);
  std::ifstream in(dir.file("out"));
  std::stringstream got;
  got << in.rdbuf();
  CHECK(got.str() == "one three");
}

TEST_CASE("write batch: a deferred failure names the write's seq and fd") {
  kj::Array<kj::byte> r = deferredFailure(PipelinedWrite{5, 9, 100, 3}, 32);
  ReplyHeader h;
  REQUIRE(r.size() == sizeof(h));
  memcpy(&h, r.begin(), sizeof(h));
  CHECK(h.magic == kReplyMagic);
  CHECK(h.length == sizeof(h));
  CHECK(h.seq == 9);
  CHECK(h.flags == kDeferredFailure);
  CHECK(h.result == 5);
  CHECK(h.error == 32);
}

TEST_CASE("write behind: a pwrite64 comes pipelined with its offset; kFileWrite is taken off, kFailureSeen kept for the deputy") {
  auto r = pwriteRequest(7, "abc", 4096, 3, 41, kNoReply | kFailureSeen | kFileWrite);
  PipelinedWrite w{};
  REQUIRE(parsePipelinedWrite(view(r), w));
  CHECK(w.offset == 4096);
  CHECK(w.failureSeen);
  CHECK(w.file);
  CHECK(w.call == static_cast<uint32_t>(CallId::Pwrite64));
  RequestHeader h;
  memcpy(&h, r.data(), sizeof(h));
  CHECK(h.flags == (kNoReply | kFailureSeen));
  auto plain = writeRequest(7, "abc", 4, 42);
  REQUIRE(parsePipelinedWrite(view(plain), w));
  CHECK(w.offset == -1);
  CHECK_FALSE(w.failureSeen);
  CHECK_FALSE(w.file);
  auto negative = pwriteRequest(7, "abc", -1, 5, 43);
  CHECK_FALSE(parsePipelinedWrite(view(negative), w));
}

TEST_CASE("write batch: kNoTtou and kFailureSeen stay on a pipelined write for the deputy, which joins only with its like") {
  auto marked = writeRequest(1, "abc", 3, 41, kNoReply | kNoTtou | kFailureSeen);
  PipelinedWrite first{}, next{};
  REQUIRE(parsePipelinedWrite(view(marked), first));
  CHECK(first.noTtou);
  RequestHeader h;
  memcpy(&h, marked.data(), sizeof(h));
  CHECK(h.flags == (kNoReply | kNoTtou | kFailureSeen));  // both kept for the deputy
  auto plain = writeRequest(1, "def", 4, 42);
  REQUIRE(parsePipelinedWrite(view(plain), next));
  CHECK_FALSE(next.noTtou);
  CHECK_FALSE(joinsWith(first, next));
  auto alike = writeRequest(1, "ghi", 5, 43, kNoReply | kNoTtou);
  REQUIRE(parsePipelinedWrite(view(alike), next));
  CHECK(joinsWith(first, next));
}

TEST_CASE("write behind: only writes that land where they would have apart travel as one") {
  const PipelinedWrite a{5, 1, 10, 100, static_cast<uint32_t>(CallId::Pwrite64), 1000};
  PipelinedWrite b = a;
  b.order = 11;
  b.offset = 1100;
  CHECK(joinsWith(a, b));  // back to back
  b.offset = 1200;
  CHECK_FALSE(joinsWith(a, b));  // a hole between them
  b.offset = 1000;
  CHECK_FALSE(joinsWith(a, b));  // the same bytes again
  const PipelinedWrite w1{5, 1, 10, 100, static_cast<uint32_t>(CallId::Write)};
  PipelinedWrite w2 = w1;
  CHECK(joinsWith(w1, w2));
  w2.fd = 6;
  CHECK_FALSE(joinsWith(w1, w2));  // another fd
  CHECK_FALSE(joinsWith(w1, a));   // a write and a pwrite64
  w2 = w1;
  w2.failureSeen = true;
  CHECK_FALSE(joinsWith(w1, w2));  // the failure rule sees it on its own
}

TEST_CASE("write behind: joined pwrite64s run at the first one's offset and move no file offset") {
  image::testing::TempDir dir;
  int fd = ::open(dir.file("out").c_str(), O_RDWR | O_CREAT, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "..........", 10) == 10);
  std::vector<std::vector<kj::byte>> parts = {pwriteRequest(fd, "ab", 3, 1, 10), pwriteRequest(fd, "cd", 5, 2, 11)};
  std::vector<kj::ArrayPtr<const kj::byte>> views;
  for (auto& p : parts) views.push_back(kj::arrayPtr(p.data(), p.size()));
  kj::Array<kj::byte> joined = joinWrites(kj::arrayPtr(views.data(), views.size()));
  Dispatcher d;
  CHECK(d.call(joined).size() == 0);
  CHECK(::lseek(fd, 0, SEEK_CUR) == 10);  // a pwrite64 moves no offset
  ::close(fd);
  CHECK(contents(dir.file("out")) == "...abcd...");
}

TEST_CASE("write behind: after a failed write, the fd's writes queued behind it fail unsent until the program knows") {
  WriteFailures f;
  const PipelinedWrite to5{5, 1, 10, 100, static_cast<uint32_t>(CallId::Write)};
  PipelinedWrite to6 = to5;
  to6.fd = 6;
  CHECK(f.before(to5) == 0);
  f.failed(5, ENOSPC);
  CHECK(f.before(to5) == ENOSPC);  // issued before the program heard of it
  CHECK(f.before(to5) == ENOSPC);
  CHECK(f.before(to6) == 0);  // other fds go on
  PipelinedWrite seen = to5;
  seen.failureSeen = true;  // the first write after the shim told the program
  CHECK(f.before(seen) == 0);
  CHECK(f.before(to5) == 0);  // and the ones after it
  f.failed(5, EIO);
  f.closed(5);  // the number may be another file's now
  CHECK(f.before(to5) == 0);
}

}  // namespace
}  // namespace mig::rsc
