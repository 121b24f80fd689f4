// The direct link home (direct_link.h): a relay holding the ticket's key reaches the
// deputy and calls it; a peer with another key is refused at the handshake and voids
// the ticket (one connection per ticket); an unused ticket closes its port; the key
// differs per job and per ticket. A resumable link (DirectLinkServer) takes the same
// key again after its connection breaks, is taken as lost only if it is not resumed
// within its limit, and never when the relay closed it.
#include "shadow/direct_link.h"

#include "shadow/cluster_key.h"
#include "shadow/loop_fixture.h"

#include <doctest/doctest.h>

#include <kj/async-io.h>

#include <capnp/rpc-twoparty.h>

#include <cstdlib>
#include <fcntl.h>
#include <sys/socket.h>
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

struct Setup : LoopFixture {
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

// A call of one byte: the echo deputy's reply.
kj::byte callOne(rpc::Deputy::Client deputy, kj::byte b, kj::WaitScope& ws) {
  auto req = deputy.callRequest();
  kj::byte one[1] = {b};
  req.setRequest(kj::arrayPtr(one, 1));
  return req.send().wait(ws).getReply()[0];
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
    CHECK(callOne(link->deputy(), 9, s.io.waitScope) == 9);
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

// A relay's connection made by hand, so that the test can break it as a partition or a
// reset does (SO_LINGER 0: the peer sees ECONNRESET, not an end of stream).
struct HandLink {
  int fd = -1;
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> client;
  kj::Maybe<rpc::Deputy::Client> deputy;

  static kj::Promise<kj::Own<HandLink>> connect(Setup& s, uint16_t port, char fill) {
    return s.io.provider->getNetwork()
        .parseAddress(kj::str("127.0.0.1:", port))
        .then([](kj::Own<kj::NetworkAddress> a) { return a->connect().attach(kj::mv(a)); })
        .then([fill](kj::Own<kj::AsyncIoStream> raw) {
          auto link = kj::heap<HandLink>();
          link->fd = KJ_ASSERT_NONNULL(raw->getFd());
          auto secure = kj::heap<SecureStream>(kj::mv(raw), SecureStream::Side::CONNECTOR, secret(fill));
          auto handshake = secure->handshake();
          link->stream = kj::mv(secure);
          return handshake.then([link = kj::mv(link)]() mutable {
            link->client = kj::heap<capnp::TwoPartyClient>(*link->stream);
            link->deputy = link->client->bootstrap().castAs<rpc::Deputy>();
            return kj::mv(link);
          });
        });
  }
  kj::byte call(kj::byte b, kj::WaitScope& ws) { return callOne(KJ_ASSERT_NONNULL(deputy), b, ws); }
  void reset() {
    struct linger now {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof now);
    deputy = nullptr;
    client = nullptr;
    stream = nullptr;
  }
};

struct Resumable {
  Setup s;
  uint64_t lostMs = 0;
  int lostCalls = 0;
  kj::Own<DirectLinkServer> server;
  explicit Resumable(uint64_t lostAfterMs) {
    server = kj::heap<DirectLinkServer>(*s.io.lowLevelProvider, s.io.provider->getTimer(), "127.0.0.1", secret('k'),
                                        s.deputy, 10000, lostAfterMs, OwnFds{}, [this](uint64_t ms) {
                                          lostMs = ms;
                                          ++lostCalls;
                                        });
  }
  void pause(uint64_t ms) { s.io.provider->getTimer().afterDelay(ms * kj::MILLISECONDS).wait(s.io.waitScope); }
  // A relay's link with the ticket's key, made by hand (HandLink).
  kj::Own<HandLink> handLink() { return HandLink::connect(s, server->port(), 'k').wait(s.io.waitScope); }
  // Such a link that carried a call, then reset as a partition or a reset breaks it.
  void linkThenReset(kj::byte b) {
    auto link = handLink();
    CHECK(link->call(b, s.io.waitScope) == b);
    link->reset();
  }
};

TEST_CASE("a resumable link is resumed with the same key after a reset, and calls go on") {
  Resumable r(60000);
  r.linkThenReset(7);
  // A stranger's try does not void the ticket once the link was up.
  CHECK(failureOf(r.s.connect(r.server->port(), 'x'), r.s.io.waitScope).size() > 0);
  auto again = r.handLink();
  CHECK(again->call(8, r.s.io.waitScope) == 8);
  CHECK(r.server->links() == 2);
  // A newer connection replaces one the deputy still holds (the relay saw the break
  // first): it is served, the old one is dropped.
  auto third = r.handLink();
  CHECK(third->call(9, r.s.io.waitScope) == 9);
  CHECK(r.server->links() == 3);
  CHECK(r.lostCalls == 0);
}

TEST_CASE("a link reset and not resumed within its limit is lost, once") {
  Resumable r(300);
  r.linkThenReset(1);
  for (int i = 0; i < 500 && r.lostCalls == 0; ++i) r.pause(10);
  CHECK(r.lostCalls == 1);
  CHECK(r.lostMs >= 300);
  r.pause(400);
  CHECK(r.lostCalls == 1);
}

TEST_CASE("a link reset and resumed within its limit is not lost") {
  Resumable m(1500);
  m.linkThenReset(2);
  auto again = m.handLink();
  CHECK(again->call(3, m.s.io.waitScope) == 3);
  m.pause(1800);  // past the limit counted from the reset: the resumption cancelled it
  CHECK(m.lostCalls == 0);
}

TEST_CASE("a link the relay closes (end of stream: the job left or ended there) is not taken as lost") {
  Resumable r(200);
  {
    auto link = r.s.connect(r.server->port(), 'k').wait(r.s.io.waitScope);
    CHECK(callOne(link->deputy(), 5, r.s.io.waitScope) == 5);
  }
  r.pause(600);
  CHECK(r.lostCalls == 0);
}

TEST_CASE("before its first link a resumable ticket is void after a wrong key, as a plain one") {
  Resumable r(60000);
  CHECK(failureOf(r.s.connect(r.server->port(), 'x'), r.s.io.waitScope).size() > 0);
  CHECK(failureOf(r.s.connect(r.server->port(), 'k'), r.s.io.waitScope).size() > 0);
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
