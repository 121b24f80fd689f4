// The direct link home (direct_link.h): a relay holding the ticket's key reaches the
// deputy and calls it; a peer with another key is refused at the handshake and voids
// the ticket (one connection per ticket); an unused ticket closes its port; the key
// differs per job and per ticket.
#include "shadow/direct_link.h"

#include "shadow/cluster_key.h"

#include <doctest/doctest.h>

#include <kj/async-io.h>

#include <cstdlib>
#include <fcntl.h>
#include <cstring>
#include <string>
#include <unistd.h>

namespace mig::shadow {
namespace {

LinkSecret secret(char fill) {
  LinkSecret s;
  s.key = kj::heapArray<kj::byte>(32);
  memset(s.key.begin(), fill, 32);
  return s;
}

// A deputy that answers each call with its request reversed.
class EchoDeputy final : public rpc::Deputy::Server {
 public:
  kj::Promise<void> call(CallContext context) override {
    auto in = context.getParams().getRequest();
    auto out = context.getResults().initReply(in.size());
    for (size_t i = 0; i < in.size(); ++i) out[i] = in[in.size() - 1 - i];
    return kj::READY_NOW;
  }
};

struct Ignore final : kj::TaskSet::ErrorHandler {
  void taskFailed(kj::Exception&&) override {}
};

struct Setup {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  Ignore ignore;
  kj::TaskSet tasks{ignore};
  rpc::Deputy::Client deputy = kj::heap<EchoDeputy>();
  OwnFds own{};
  uint16_t serve(char fill, uint64_t timeoutMs = 10000) {
    return serveDirectLink(*io.lowLevelProvider, io.provider->getTimer(), "127.0.0.1", secret(fill), deputy, tasks,
                           timeoutMs, own)
        .wait(io.waitScope);
  }
  kj::Promise<kj::Own<DirectLink>> connect(uint16_t port, char fill) {
    return DirectLink::connect(io.provider->getNetwork(), kj::str("127.0.0.1:", port), secret(fill),
                               io.provider->getTimer(), 5000);
  }
};

kj::String failureOf(kj::Promise<kj::Own<DirectLink>> p, kj::WaitScope& ws) {
  kj::String why;
  p.then([](kj::Own<DirectLink>) {}, [&why](kj::Exception&& e) { why = kj::str(e.getDescription()); }).wait(ws);
  return why;
}

TEST_CASE("a relay with the ticket's key calls the deputy over the direct link") {
  Setup s;
  uint16_t port = s.serve('k');
  CHECK(port != 0);
  auto link = s.connect(port, 'k').wait(s.io.waitScope);
  for (int i = 0; i < 3; ++i) {
    auto req = link->deputy().callRequest();
    kj::byte bytes[4] = {1, 2, 3, static_cast<kj::byte>(i)};
    req.setRequest(kj::arrayPtr(bytes, 4));
    auto response = req.send().wait(s.io.waitScope);  // owns what getReply() points into
    auto reply = response.getReply();
    REQUIRE(reply.size() == 4);
    CHECK(reply[0] == i);
    CHECK(reply[3] == 1);
  }
  // One connection per ticket: the port is closed once the link is up.
  CHECK(failureOf(s.connect(port, 'k'), s.io.waitScope).size() > 0);
}

int g_placed = -1, g_released = -1;
int placeHigh(int fd) {
  int placed = fcntl(fd, F_DUPFD_CLOEXEC, 900);
  close(fd);
  g_placed = placed;
  return placed;
}

TEST_CASE("the deputy's end of the link sits where the deputy keeps its own fds") {
  Setup s;
  s.own = OwnFds{placeHigh, [](int fd) { g_released = fd; }};
  uint16_t port = s.serve('k');
  const int listenFd = g_placed;
  CHECK(listenFd >= 900);
  {
    auto link = s.connect(port, 'k').wait(s.io.waitScope);
    auto req = link->deputy().callRequest();
    kj::byte one[1] = {9};
    req.setRequest(kj::arrayPtr(one, 1));
    CHECK(req.send().wait(s.io.waitScope).getReply()[0] == 9);
    CHECK(g_placed >= 900);
    CHECK(g_placed != listenFd);
    CHECK(g_released == listenFd);  // the listener is closed once the link is in
  }
  const int linkFd = g_placed;
  // The relay's end went away: the deputy's end closes and is no longer marked its own.
  for (int i = 0; i < 50 && g_released != linkFd; ++i) {
    s.io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(s.io.waitScope);
  }
  CHECK(g_released == linkFd);
  CHECK(fcntl(linkFd, F_GETFD) < 0);
}

TEST_CASE("a peer with another key is refused, and the ticket is void after it") {
  Setup s;
  uint16_t port = s.serve('k');
  auto why = failureOf(s.connect(port, 'x'), s.io.waitScope);
  CHECK(why.size() > 0);
  // The holder of the right key comes too late: it falls back to the shadowds.
  CHECK(failureOf(s.connect(port, 'k'), s.io.waitScope).size() > 0);
}

TEST_CASE("a ticket not used in time closes its port") {
  Setup s;
  uint16_t port = s.serve('k', 50);
  s.io.provider->getTimer().afterDelay(200 * kj::MILLISECONDS).wait(s.io.waitScope);
  CHECK(failureOf(s.connect(port, 'k'), s.io.waitScope).size() > 0);
}

TEST_CASE("the ticket's key: 32 bytes, its own per job and per nonce, never the cluster key") {
  char path[] = "/tmp/mig-dlkey.XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const char* contents = "0123456789abcdef0123456789abcdef";
  REQUIRE(write(fd, contents, 32) == 32);
  close(fd);
  auto key = ClusterKey::load(path);
  unlink(path);
  kj::byte n1[16] = {1}, n2[16] = {2};
  auto a = directLinkKey(key, 7, n1), b = directLinkKey(key, 8, n1), c = directLinkKey(key, 7, n2),
       again = directLinkKey(key, 7, n1);
  REQUIRE(a.size() == 32);
  CHECK(a == again);
  CHECK(a != b);
  CHECK(a != c);
  CHECK(memcmp(a.begin(), contents, 32) != 0);
  CHECK(hostOf("10.0.0.1:7070") == "10.0.0.1");
  CHECK(hostOf("[::1]:7070") == "[::1]");
}

}  // namespace
}  // namespace mig::shadow
