// A peer that has not logged in gets at most the limit through; once lifted, all.
#include "shadow/prelogin_stream.h"

#include <doctest/doctest.h>

#include <kj/async-io.h>

namespace mig::shadow {
namespace {

struct Pipe {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::TwoWayPipe pipe = io.provider->newTwoWayPipe();
};

TEST_CASE("prelogin stream: reads stop at the limit and it says so") {
  Pipe p;
  auto& ws = p.io.waitScope;
  PreLoginStream capped(kj::mv(p.pipe.ends[0]), 100);
  auto over = capped.whenOverLimit().fork();
  kj::byte out[300] = {};
  auto sending = p.pipe.ends[1]->write(out, sizeof(out));  // the peer sends more than allowed

  kj::byte in[300];
  // Asked for all 300 bytes, it reads only up to the limit (the rest stays unread).
  size_t n = capped.tryRead(in, 300, 300).wait(ws);
  CHECK(n == 100);
  CHECK(capped.bytesRead() == 100);
  CHECK(over.addBranch().poll(ws));
  // Beyond the limit every read fails.
  CHECK_THROWS(capped.tryRead(in, 1, 1).wait(ws));
  CHECK(capped.bytesRead() == 100);
}

TEST_CASE("prelogin stream: under the limit nothing happens; lifted, no limit") {
  Pipe p;
  auto& ws = p.io.waitScope;
  PreLoginStream capped(kj::mv(p.pipe.ends[0]), 100);
  auto over = capped.whenOverLimit().fork();
  kj::byte out[300] = {};
  p.pipe.ends[1]->write(out, 60).wait(ws);
  kj::byte in[300];
  CHECK(capped.tryRead(in, 1, 300).wait(ws) == 60);
  CHECK_FALSE(over.addBranch().poll(ws));

  capped.lift();  // logged in
  auto sending = p.pipe.ends[1]->write(out, sizeof(out));
  size_t got = 0;
  while (got < sizeof(out)) got += capped.tryRead(in, 1, sizeof(in)).wait(ws);
  CHECK(got == 300);
  CHECK_FALSE(over.addBranch().poll(ws));
}

}  // namespace
}  // namespace mig::shadow
