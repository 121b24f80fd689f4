// writeNow (stream_write.h): a write the kernel takes whole is answered on the loop
// as the dispatcher would answer it; one it takes part of leaves a request for the
// rest that writes exactly the bytes left; one it takes nothing of, or a request of
// another kind, goes to a worker as before.
#include "deputy/stream_write.h"

#include "rsc/dispatch.h"
#include "rsc/marshal.h"

#include <doctest/doctest.h>

#include <csignal>
#include <cstring>
#include <thread>
#include <vector>
#include <sys/socket.h>
#include <unistd.h>

namespace mig::deputy {
namespace {

std::vector<uint8_t> encode(rsc::CallId id, const int64_t args[6], uint32_t flags = 0) {
  std::vector<uint8_t> buf(rsc::kMaxMessage);
  const int64_t n = rsc::encodeRequest(*rsc::rowById(static_cast<uint32_t>(id)), args, 7, flags, buf.data(),
                                       buf.size());
  REQUIRE(n > 0);
  buf.resize(static_cast<size_t>(n));
  return buf;
}

kj::ArrayPtr<const kj::byte> bytes(const std::vector<uint8_t>& v) { return kj::arrayPtr(v.data(), v.size()); }

rsc::ReplyHeader header(const kj::Array<kj::byte>& reply) {
  rsc::ReplyHeader r{};
  REQUIRE(reply.size() == sizeof(r));
  memcpy(&r, reply.begin(), sizeof(r));
  return r;
}

struct Pair {
  int fd[2];
  Pair() { REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fd) == 0); }
  ~Pair() { close(fd[0]); close(fd[1]); }
};

TEST_CASE("a write the socket takes whole is answered here, as the dispatcher would") {
  Pair p;
  std::string text = "hello, home";
  const int64_t args[6] = {p.fd[0], reinterpret_cast<int64_t>(text.data()), static_cast<int64_t>(text.size())};
  auto request = encode(rsc::CallId::Write, args);
  KJ_IF_MAYBE(now, writeNow(bytes(request), p.fd[0])) {
    CHECK(now->done);
    CHECK(now->written == text.size());
    const auto r = header(now->reply);
    CHECK(r.result == static_cast<int64_t>(text.size()));
    CHECK(r.error == 0);
    CHECK(r.seq == 7);
  } else {
    FAIL("not tried");
  }
  char got[64] = {};
  CHECK(read(p.fd[1], got, sizeof got) == static_cast<ssize_t>(text.size()));
  CHECK(std::string(got) == text);

  SUBCASE("pipelined: nothing to answer") {
    auto piped = encode(rsc::CallId::Write, args, rsc::kNoReply);
    KJ_IF_MAYBE(now, writeNow(bytes(piped), p.fd[0])) {
      CHECK(now->done);
      CHECK(now->reply == nullptr);
    } else {
      FAIL("not tried");
    }
  }
  SUBCASE("send with no address, and not one with an address or the job's own MSG_DONTWAIT") {
    const int64_t send[6] = {p.fd[0], reinterpret_cast<int64_t>(text.data()), static_cast<int64_t>(text.size()), 0, 0,
                             0};
    KJ_IF_MAYBE(now, writeNow(bytes(encode(rsc::CallId::Sendto, send)), p.fd[0])) {
      CHECK(now->done);
      CHECK(header(now->reply).result == static_cast<int64_t>(text.size()));
    } else {
      FAIL("not tried");
    }
    const int64_t dontwait[6] = {send[0], send[1], send[2], MSG_DONTWAIT, 0, 0};
    CHECK(writeNow(bytes(encode(rsc::CallId::Sendto, dontwait)), p.fd[0]) == nullptr);
    char address[16] = {};
    const int64_t to[6] = {send[0], send[1], send[2], 0, reinterpret_cast<int64_t>(address), sizeof address};
    CHECK(writeNow(bytes(encode(rsc::CallId::Sendto, to)), p.fd[0]) == nullptr);
  }
  SUBCASE("another call is not tried") {
    const int64_t readArgs[6] = {p.fd[0], reinterpret_cast<int64_t>(got), 8};
    CHECK(writeNow(bytes(encode(rsc::CallId::Read, readArgs)), p.fd[0]) == nullptr);
  }
}

TEST_CASE("a write the socket takes part of: the rest request writes exactly what is left") {
  Pair p;
  const int small = 4096;
  setsockopt(p.fd[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  std::vector<uint8_t> data(512 << 10);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + i / 251);
  const int64_t args[6] = {p.fd[0], reinterpret_cast<int64_t>(data.data()), static_cast<int64_t>(data.size())};
  auto request = encode(rsc::CallId::Write, args);
  KJ_IF_MAYBE(now, writeNow(bytes(request), p.fd[0])) {
    REQUIRE_FALSE(now->done);
    REQUIRE(now->written > 0);
    REQUIRE(now->written < data.size());
    // The rest, run by the dispatcher as a worker would (blocking), while the peer reads.
    std::vector<uint8_t> got;
    std::thread reader([&]() {
      char buf[65536];
      while (got.size() < data.size()) {
        const ssize_t n = read(p.fd[1], buf, sizeof buf);
        if (n <= 0) break;
        got.insert(got.end(), buf, buf + n);
      }
    });
    rsc::Dispatcher dispatcher;
    auto restReply = dispatcher.call(now->rest);
    reader.join();
    CHECK(got == data);
    rsc::RequestHeader h;
    memcpy(&h, request.data(), sizeof h);
    const auto r = header(joinedReply(h, now->written, kj::mv(restReply)));
    CHECK(r.result == static_cast<int64_t>(data.size()));
    // Cancelled before the rest began: what went here.
    CHECK(header(joinedReply(h, now->written, nullptr)).result == static_cast<int64_t>(now->written));
  } else {
    FAIL("not tried");
  }
}

TEST_CASE("a full pipe takes nothing: to a worker; a closed one answers EPIPE") {
  int fd[2];
  REQUIRE(pipe(fd) == 0);
  std::vector<uint8_t> data(512 << 10, 'x');
  const int64_t args[6] = {fd[1], reinterpret_cast<int64_t>(data.data()), static_cast<int64_t>(data.size())};
  auto request = encode(rsc::CallId::Write, args, rsc::kNoReply);
  uint64_t first = 0;
  KJ_IF_MAYBE(now, writeNow(bytes(request), fd[1])) {
    CHECK_FALSE(now->done);
    first = now->written;  // what the pipe held room for
  } else {
    FAIL("not tried");
  }
  CHECK(first > 0);
  KJ_IF_MAYBE(now, writeNow(bytes(request), fd[1])) {
    CHECK_FALSE(now->done);
    CHECK(now->written == 0);
  } else {
    FAIL("not tried");
  }
  close(fd[0]);
  signal(SIGPIPE, SIG_IGN);
  KJ_IF_MAYBE(now, writeNow(bytes(request), fd[1])) {
    CHECK(now->done);
    const auto r = header(now->reply);
    CHECK(r.result == -1);
    CHECK(r.error == EPIPE);
  } else {
    FAIL("not tried");
  }
  close(fd[1]);
}

}  // namespace
}  // namespace mig::deputy
