// See rpc_server.h.
#include "shadow/rpc_server.h"

#include <kj/debug.h>

namespace mig::shadow {
namespace {

struct Connection {
  Connection(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client bootstrap)
      : stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

}  // namespace

kj::Promise<void> serveRpc(kj::ConnectionReceiver& listener, kj::TaskSet& tasks, AcceptFn& accept) {
  return listener.accept().then([&listener, &tasks, &accept](kj::Own<kj::AsyncIoStream> stream) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      auto bootstrap = accept(*stream);
      auto conn = kj::heap<Connection>(kj::mv(stream), kj::mv(bootstrap));
      auto closed = conn->network.onDisconnect();
      tasks.add(closed.attach(kj::mv(conn)));
    })) {
      // A refused connection: drop it, keep listening.
      KJ_LOG(WARNING, "connection refused", e->getDescription());
    }
    return serveRpc(listener, tasks, accept);
  });
}

}  // namespace mig::shadow
