// The control lines over Cap'n Proto (link_process.h controlOverRpc), as a link process
// and a restarted shadowd use them after Local.relearnGuest: lines written on either
// side arrive on the other whole and in order, and the end of the connection ends both
// sides' streams (a LineChannel reads its end). And shadowd takes such an announcement,
// or a deputy's registration again, only from its own helper: anything else is refused
// with one line saying why.
#include "shadow/link_process.h"

#include "shadow/daemon.h"
#include "shadow/loop_fixture.h"
#include "shadow/services.h"

#include <doctest/doctest.h>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <string>
#include <unistd.h>

namespace mig::shadow {
namespace {

// Both sides of one connection, as after Local.relearnGuest: each side's GuestControl
// (its `mine`) is its end's bootstrap, so each reaches the other's over the connection.
struct Connected : LoopFixture {
  kj::TwoWayPipe wire = kj::newTwoWayPipe();
  kj::Own<LineChannel> shadowd, link;
  kj::Own<capnp::TwoPartyClient> server, client;

  Connected() {
    auto toLink = kj::newPromiseAndFulfiller<rpc::GuestControl::Client>();
    auto toShadowd = kj::newPromiseAndFulfiller<rpc::GuestControl::Client>();
    auto shadowdSide = controlOverRpc(tasks, rpc::GuestControl::Client(kj::mv(toLink.promise)));
    auto linkSide = controlOverRpc(tasks, rpc::GuestControl::Client(kj::mv(toShadowd.promise)));
    shadowd = kj::heap<LineChannel>(kj::mv(shadowdSide.stream));
    link = kj::heap<LineChannel>(kj::mv(linkSide.stream));
    server = kj::heap<capnp::TwoPartyClient>(*wire.ends[0], kj::mv(shadowdSide.mine), capnp::rpc::twoparty::Side::SERVER);
    client = kj::heap<capnp::TwoPartyClient>(*wire.ends[1], kj::mv(linkSide.mine), capnp::rpc::twoparty::Side::CLIENT);
    toLink.fulfiller->fulfill(server->bootstrap().castAs<rpc::GuestControl>());
    toShadowd.fulfiller->fulfill(client->bootstrap().castAs<rpc::GuestControl>());
  }
  kj::String read(LineChannel& from) {
    auto line = from.readLine().wait(io.waitScope);
    KJ_IF_MAYBE(l, line) { return kj::mv(*l); }
    return kj::str("<end>");
  }
};

TEST_CASE("control lines go both ways, whole and in order") {
  Connected c;
  c.link->writeLine("running");
  c.link->writeLine("counts 3 100 20");
  c.link->writeLine("ended 0 1 2 3");
  CHECK(c.read(*c.shadowd) == "running");
  CHECK(c.read(*c.shadowd) == "counts 3 100 20");
  CHECK(c.read(*c.shadowd) == "ended 0 1 2 3");
  c.shadowd->writeLine("check");
  c.shadowd->writeLine("tell");
  CHECK(c.read(*c.link) == "check");
  CHECK(c.read(*c.link) == "tell");
}

TEST_CASE("the end of the connection ends both streams") {
  Connected c;
  c.link->writeLine("running");
  CHECK(c.read(*c.shadowd) == "running");
  // The link process is gone: its connection with it.
  c.client = nullptr;
  c.wire.ends[1] = nullptr;
  CHECK(c.read(*c.link) == "<end>");
  // shadowd's side sees the connection end, and drops it (serveRpc).
  c.server->onDisconnect().wait(c.io.waitScope);
  c.server = nullptr;
  CHECK(c.read(*c.shadowd) == "<end>");
}

// What a refused call says.
std::string refusal(kj::Promise<void> call, kj::WaitScope& ws) {
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { call.wait(ws); })) { return e->getDescription().cStr(); }
  return "accepted";
}

struct Shadowd {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  Daemon d{io, DaemonConfig{}, ClusterKey::none()};

  std::string announce(pid_t peerPid, uid_t peerUid, pid_t linkPid, pid_t realPid) {
    rpc::Local::Client local = makeLocal(d, peerPid, peerUid);
    auto req = local.relearnGuestRequest();
    auto g = req.initGuest();
    g.setJobId(7);
    g.setToken(kj::heapArray<kj::byte>(32));
    g.setHome("10.0.0.1:7070");
    g.setLinkPid(linkPid);
    g.setRealPid(realPid);
    return refusal(req.send().ignoreResult(), io.waitScope);
  }
  std::string registerAgain(pid_t peerPid, uid_t peerUid) {
    rpc::Local::Client local = makeLocal(d, peerPid, peerUid);
    auto req = local.registerDeputyRequest();
    req.setJobId(7);
    req.setToken(kj::heapArray<kj::byte>(32));
    req.setAgain(true);
    req.initRecord().setLocation("10.0.0.2:7070");
    return refusal(req.send().ignoreResult(), io.waitScope);
  }
};

bool says(const std::string& text, const char* what) { return text.find(what) != std::string::npos; }

TEST_CASE("a restarted shadowd takes a guest only from that guest's own link process") {
  Shadowd s;
  const pid_t me = getpid();
  // Another user on the socket (root's migctl may use it, not announce guests).
  CHECK(says(s.announce(me, getuid() + 1, me, me), "only this shadowd's own link processes"));
  // Someone naming another process as the link process.
  CHECK(says(s.announce(me, getuid(), me + 1, me), ", not the link process "));
  // The right PID, but not mig-link.
  CHECK(says(s.announce(me, getuid(), me, me), "is not a link process (mig-link)"));
  CHECK(s.d.hostedJobs().size() == 0);
}

TEST_CASE("a restarted home shadowd takes a moved job back only from its deputy") {
  Shadowd s;
  CHECK(says(s.registerAgain(getpid(), getuid() + 1), "only a deputy of this shadowd's user"));
  CHECK(says(s.registerAgain(0, getuid()), "only a deputy of this shadowd's user"));
  // This test is not mig-deputy.
  CHECK(says(s.registerAgain(getpid(), getuid()), "is not a deputy (mig-deputy)"));
  CHECK(s.d.homeJobs().size() == 0);
}

}  // namespace
}  // namespace mig::shadow
