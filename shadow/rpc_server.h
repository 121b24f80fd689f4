// Accepting RPC connections, one RpcSystem each, so that each gets its own bootstrap
// object (a Gate keeps its own challenge) and may be refused (a Unix peer of another
// user).
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/function.h>

namespace mig::shadow {

// Called per accepted connection: returns its bootstrap capability, or throws to
// refuse it.
using AcceptFn = kj::Function<capnp::Capability::Client(kj::AsyncIoStream& stream)>;

// Serves `listener` forever (the promise fails only if accept() does).
kj::Promise<void> serveRpc(kj::ConnectionReceiver& listener, kj::TaskSet& tasks, AcceptFn& accept);

}  // namespace mig::shadow
