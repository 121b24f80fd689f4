// See rpc_server.h.
#include "shadow/rpc_server.h"

#include "shadow/direct_link.h"
#include "shadow/prelogin_stream.h"
#include "shadow/secure_stream.h"

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

// One peer's connection: the pre-login limits on the socket, the link stream (the
// handshake runs under those limits), then Cap'n Proto once the handshake is done.
// `self` is shared with the Gate's login callback, which may in principle outlive the
// connection: it then finds null.
struct GatedServer::Connection {
  struct Handle : kj::Refcounted {
    Connection* conn = nullptr;
  };
  struct Rpc {
    Rpc(kj::AsyncIoStream& stream, capnp::Capability::Client bootstrap)
        : network(stream, capnp::rpc::twoparty::Side::SERVER), rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
    capnp::TwoPartyVatNetwork network;
    capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  };
  Connection(GatedServer& server, kj::String peer, kj::Own<PreLoginStream> s, kj::Own<Handle> h,
             const LinkSecret& secret)
      : server(server),
        peer(kj::mv(peer)),
        handle(kj::mv(h)),
        prelogin(*s),
        stream(kj::heap<SecureStream>(kj::mv(s), SecureStream::Side::ACCEPTOR, secret)) {
    handle->conn = this;
    ++server.pending_;
  }
  ~Connection() noexcept(false) {
    handle->conn = nullptr;
    if (!loggedIn) --server.pending_;
  }
  // Resolves when the connection closes; fails if the handshake does.
  kj::Promise<void> run(capnp::Capability::Client bootstrap) {
    return stream->handshake().then([this, bootstrap = kj::mv(bootstrap)]() mutable {
      rpc = kj::heap<Rpc>(*stream, kj::mv(bootstrap));
      return rpc->network.onDisconnect();
    });
  }
  void login() {
    if (loggedIn) return;
    loggedIn = true;
    --server.pending_;
    prelogin.lift();
  }

  GatedServer& server;
  kj::String peer;
  bool loggedIn = false;
  kj::Own<Handle> handle;
  PreLoginStream& prelogin;  // owned by `stream`
  kj::Own<SecureStream> stream;
  kj::Own<Rpc> rpc;  // after `stream`: goes first
};

GatedServer::GatedServer(kj::Timer& timer, PreLoginLimits limits, LinkSecret secret, GateFn makeGate, LogFn log)
    : timer_(timer), limits_(limits), secret_(kj::mv(secret)), makeGate_(kj::mv(makeGate)), log_(kj::mv(log)) {}

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
  auto gate = makeGate_(
      [h = kj::addRef(*handle)]() {
        if (h->conn != nullptr) h->conn->login();
      },
      [h = kj::addRef(*handle)]() {
        if (h->conn != nullptr) watchLiveness(*h->conn->stream);
      });
  auto overLimit = stream->whenOverLimit();
  auto conn = kj::heap<Connection>(*this, kj::mv(peer), kj::mv(stream), kj::mv(handle), secret_);
  Connection* c = conn.get();
  // The first of: the peer hangs up, fails the link handshake (no cluster key, not a
  // shadowd), sends too much before login, or does not log in in time. A logged-in
  // connection lasts until it is closed.
  auto closed = c->run(kj::mv(gate)).then([]() { return kj::String(); },
                                          [](kj::Exception&& e) { return kj::str(e.getDescription()); });
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
