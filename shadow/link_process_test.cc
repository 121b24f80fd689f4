// The control lines over Cap'n Proto (link_process.h controlOverRpc), as a link process
// and a restarted shadowd use them after Local.relearnGuest: lines written on either
// side arrive on the other whole and in order, and the end of the connection ends both
// sides' streams (a LineChannel reads its end).
#include "shadow/link_process.h"

#include <doctest/doctest.h>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

namespace mig::shadow {
namespace {

struct Ignore final : kj::TaskSet::ErrorHandler {
  void taskFailed(kj::Exception&&) override {}
};

// Both sides of one connection, as after Local.relearnGuest: each side's GuestControl
// (its `mine`) is its end's bootstrap, so each reaches the other's over the connection.
struct Connected {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  Ignore ignore;
  kj::TaskSet tasks{ignore};
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

}  // namespace
}  // namespace mig::shadow
