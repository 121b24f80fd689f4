// See rpc_server.h.
#include "shadow/rpc_server.h"

#include "shadow/prelogin_stream.h"

#include <kj/debug.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

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

// "10.0.0.2:41234", for the log.
kj::String peerName(kj::AsyncIoStream& stream) {
  struct sockaddr_storage ss {};
  kj::uint len = sizeof(ss);
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { stream.getpeername(reinterpret_cast<sockaddr*>(&ss), &len); })) {
    return kj::str("an unknown peer");
  }
  char host[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return kj::str(host, ":", ntohs(in->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return kj::str("[", host, "]:", ntohs(in6->sin6_port));
  }
  return kj::str("a local peer");
}

kj::String seconds(uint64_t ms) {
  return ms % 1000 == 0 ? kj::str(ms / 1000, " s") : kj::str(ms / 1000, ".", kj::str(1000 + ms % 1000).slice(1), " s");
}

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

// One peer's connection. `self` is shared with the Gate's login callback, which may
// in principle outlive the connection: it then finds null.
struct GatedServer::Connection {
  struct Handle : kj::Refcounted {
    Connection* conn = nullptr;
  };
  Connection(GatedServer& server, kj::String peer, kj::Own<PreLoginStream> s, kj::Own<Handle> h,
             capnp::Capability::Client bootstrap)
      : server(server),
        peer(kj::mv(peer)),
        handle(kj::mv(h)),
        stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {
    handle->conn = this;
    ++server.pending_;
  }
  ~Connection() noexcept(false) {
    handle->conn = nullptr;
    if (!loggedIn) --server.pending_;
  }
  void login() {
    if (loggedIn) return;
    loggedIn = true;
    --server.pending_;
    stream->lift();
  }

  GatedServer& server;
  kj::String peer;
  bool loggedIn = false;
  kj::Own<Handle> handle;
  kj::Own<PreLoginStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

GatedServer::GatedServer(kj::Timer& timer, PreLoginLimits limits, GateFn makeGate, LogFn log)
    : timer_(timer), limits_(limits), makeGate_(kj::mv(makeGate)), log_(kj::mv(log)) {}

kj::Promise<void> GatedServer::serve(kj::ConnectionReceiver& listener) {
  return listener.accept().then([this, &listener](kj::Own<kj::AsyncIoStream> stream) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { accepted(kj::mv(stream)); })) {
      log_(kj::str("dropped a new connection: ", e->getDescription()));
    }
    return serve(listener);
  });
}

void GatedServer::taskFailed(kj::Exception&& e) { log_(kj::str("error: ", e.getDescription())); }

void GatedServer::accepted(kj::Own<kj::AsyncIoStream> raw) {
  auto peer = peerName(*raw);
  if (pending_ >= limits_.maxPending) {
    // Closed at once (dropping the stream closes the socket).
    log_(kj::str("closed the connection from ", peer, " at once: ", pending_,
                 " connections are already waiting to log in (the limit)"));
    return;
  }
  auto stream = kj::heap<PreLoginStream>(kj::mv(raw), limits_.maxBytes);
  auto handle = kj::refcounted<Connection::Handle>();
  auto gate = makeGate_([h = kj::addRef(*handle)]() {
    if (h->conn != nullptr) h->conn->login();
  });
  auto overLimit = stream->whenOverLimit();
  auto conn = kj::heap<Connection>(*this, kj::mv(peer), kj::mv(stream), kj::mv(handle), kj::mv(gate));
  Connection* c = conn.get();
  // The first of: the peer hangs up, sends too much before login, or does not log in
  // in time. A logged-in connection lasts until it is closed.
  auto closed = c->network.onDisconnect().then([]() { return kj::String(); });
  auto tooMuch = overLimit.then([c, max = limits_.maxBytes]() {
    return kj::str("it sent ", max, " bytes without logging in (the limit)");
  });
  auto late = timer_.afterDelay(limits_.timeoutMs * kj::MILLISECONDS)
                  .then([c, ms = limits_.timeoutMs]() -> kj::Promise<kj::String> {
                    if (c->loggedIn) return kj::NEVER_DONE;
                    return kj::str("no login within ", seconds(ms), " (the login timeout)");
                  });
  connections_.add(closed.exclusiveJoin(kj::mv(tooMuch))
                .exclusiveJoin(kj::mv(late))
                .then([this, c](kj::String why) {
                  if (why.size() > 0) log_(kj::str("closed the connection from ", c->peer, ": ", why));
                })
                .attach(kj::mv(conn)));
}

}  // namespace mig::shadow
