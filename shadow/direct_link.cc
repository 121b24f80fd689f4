// See direct_link.h.
#include "shadow/direct_link.h"

#include "shadow/cluster_key.h"

#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>

#include <cstring>

namespace mig::shadow {
namespace {

// A served link: the stream and the RPC system over it, kept until it breaks.
struct ServedLink {
  ServedLink(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client bootstrap)
      : stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

kj::Own<kj::AsyncIoStream> secured(kj::Own<kj::AsyncIoStream> raw, SecureStream::Side side, const LinkSecret& secret,
                                   kj::Promise<void>& handshake) {
  auto s = kj::heap<SecureStream>(kj::mv(raw), side, secret);
  handshake = s->handshake();
  return s;
}

}  // namespace

kj::Array<kj::byte> directLinkKey(const ClusterKey& key, uint64_t jobId, kj::ArrayPtr<const kj::byte> nonce) {
  auto msg = kj::heapArray<kj::byte>(sizeof(jobId) + nonce.size());
  memcpy(msg.begin(), &jobId, sizeof(jobId));
  if (nonce.size() > 0) memcpy(msg.begin() + sizeof(jobId), nonce.begin(), nonce.size());
  return key.proof("mig-direct-link", msg);
}

kj::String hostOf(kj::StringPtr address) {
  KJ_IF_MAYBE(colon, address.findLast(':')) { return kj::str(address.slice(0, *colon)); }
  return kj::str(address);
}

kj::Promise<uint16_t> serveDirectLink(kj::AsyncIoProvider& io, kj::StringPtr host, LinkSecret secret,
                                      capnp::Capability::Client bootstrap, kj::TaskSet& tasks, uint64_t acceptTimeoutMs) {
  return io.getNetwork().parseAddress(kj::str(host, ":0")).then(
      [&io, &tasks, secret = kj::mv(secret), bootstrap = kj::mv(bootstrap),
       acceptTimeoutMs](kj::Own<kj::NetworkAddress> address) mutable -> uint16_t {
        auto listener = address->listen();
        const uint16_t port = static_cast<uint16_t>(listener->getPort());
        // One connection, and only one that holds the ticket's key: the listener is
        // closed once it is in, or when the time is up.
        auto in = listener->accept().then([secret = kj::mv(secret)](kj::Own<kj::AsyncIoStream> raw) mutable {
          kj::Promise<void> handshake = nullptr;
          auto s = secured(kj::mv(raw), SecureStream::Side::ACCEPTOR, secret, handshake);
          return handshake.then([s = kj::mv(s)]() mutable { return kj::mv(s); });
        });
        auto bounded = io.getTimer().timeoutAfter(acceptTimeoutMs * kj::MILLISECONDS, kj::mv(in))
                           .attach(kj::mv(listener), kj::mv(address));
        tasks.add(bounded.then([bootstrap = kj::mv(bootstrap)](kj::Own<kj::AsyncIoStream> s) mutable {
          auto link = kj::heap<ServedLink>(kj::mv(s), kj::mv(bootstrap));
          auto ended = link->network.onDisconnect();
          return ended.attach(kj::mv(link));
        }));
        return port;
      });
}

DirectLink::DirectLink(kj::Own<kj::AsyncIoStream> stream)
    : stream_(kj::mv(stream)), client_(*stream_), deputy_(client_.bootstrap().castAs<rpc::Deputy>()) {}

kj::Promise<kj::Own<DirectLink>> DirectLink::connect(kj::Network& network, kj::StringPtr address, LinkSecret secret,
                                                     kj::Timer& timer, uint64_t timeoutMs) {
  auto linked = network.parseAddress(address)
                    .then([](kj::Own<kj::NetworkAddress> a) { return a->connect().attach(kj::mv(a)); })
                    .then([secret = kj::mv(secret)](kj::Own<kj::AsyncIoStream> raw) mutable {
                      kj::Promise<void> handshake = nullptr;
                      auto s = secured(kj::mv(raw), SecureStream::Side::CONNECTOR, secret, handshake);
                      return handshake.then([s = kj::mv(s)]() mutable { return kj::heap<DirectLink>(kj::mv(s)); });
                    });
  return timer.timeoutAfter(timeoutMs * kj::MILLISECONDS, kj::mv(linked));
}

}  // namespace mig::shadow
