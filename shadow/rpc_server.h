// Accepting RPC connections, one RpcSystem each, so that each gets its own bootstrap
// object (a Gate keeps its own challenge) and may be refused (a Unix peer of another
// user).
#pragma once

#include "shadow/secure_stream.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/function.h>

namespace mig::shadow {

// Called per accepted connection: returns its bootstrap capability, or throws to
// refuse it.
using AcceptFn = kj::Function<capnp::Capability::Client(kj::AsyncIoStream& stream)>;

// Serves `listener` forever (the promise fails only if accept() does).
kj::Promise<void> serveRpc(kj::ConnectionReceiver& listener, kj::TaskSet& tasks, AcceptFn& accept);

// What a TCP peer may do before it logs in (DESIGN.md, Security).
struct PreLoginLimits {
  size_t maxBytes = 64 * 1024;  // bytes it may send; at that many the connection is closed
  uint64_t timeoutMs = 10000;   // time it has to log in
  size_t maxPending = 16;       // connections not logged in at once; more are closed at once
};

// Serves the peers' TCP listener: each connection first runs the link handshake
// (secure_stream.h) with `secret`, then its bootstrap is a Gate made by `makeGate`,
// which calls `onLogin` once its peer has logged in, and `watchLiveness` to have the
// connection watched like a job's link (direct_link.h watchLiveness: a peer that
// vanishes silently is noticed in seconds, for a job's relayed link home). Until then the
// connection is held to `limits`; each connection closed for a limit or a failed
// handshake is logged with one line.
class GatedServer final : private kj::TaskSet::ErrorHandler {
 public:
  using GateFn =
      kj::Function<capnp::Capability::Client(kj::Function<void()> onLogin, kj::Function<void()> watchLiveness)>;
  using LogFn = kj::Function<void(kj::StringPtr line)>;
  GatedServer(kj::Timer& timer, PreLoginLimits limits, LinkSecret secret, GateFn makeGate, LogFn log);

  // The connections are its own: they end with it.
  kj::Promise<void> serve(kj::ConnectionReceiver& listener);
  size_t pending() const { return pending_; }

 private:
  struct Connection;
  void accepted(kj::Own<kj::AsyncIoStream> stream);
  void taskFailed(kj::Exception&& e) override;

  kj::Timer& timer_;
  PreLoginLimits limits_;
  LinkSecret secret_;
  GateFn makeGate_;
  LogFn log_;
  size_t pending_ = 0;
  kj::TaskSet connections_{*this};  // last: its connections go first
};

}  // namespace mig::shadow
