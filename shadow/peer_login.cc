// See peer_login.h.
#include "shadow/peer_login.h"

#include "shadow/direct_link.h"
#include "shadow/error.h"

#include <kj/debug.h>

namespace mig::shadow {

kj::Promise<kj::Own<PeerLink>> loginToPeer(kj::AsyncIoContext& io, const ClusterKey& key, LinkMode mode,
                                           kj::StringPtr address, uint64_t timeoutMs, bool watched) {
  auto addr = kj::str(address);
  auto work = io.provider->getNetwork()
                  .parseAddress(addr)
                  .then([](kj::Own<kj::NetworkAddress> a) { return a->connect(); })
                  .catch_([addr = kj::str(addr)](kj::Exception&& e) -> kj::Own<kj::AsyncIoStream> {
                    fail(kj::str("cannot reach ", addr, ": ", oneLine(e.getDescription())));
                  })
                  .then([&key, mode, watched, addr = kj::str(addr)](kj::Own<kj::AsyncIoStream> raw) {
                    if (watched) watchLiveness(*raw);
                    auto secure = kj::heap<SecureStream>(kj::mv(raw), SecureStream::Side::CONNECTOR, linkSecret(key, mode));
                    auto handshake = secure->handshake();
                    return handshake.then([secure = kj::mv(secure)]() mutable { return kj::mv(secure); },
                                          [addr = kj::str(addr)](kj::Exception&& e) -> kj::Own<SecureStream> {
                                            fail(kj::str("cannot open a link to ", addr, ": ", oneLine(e.getDescription())));
                                          });
                  })
                  .then([&key, addr = kj::str(addr)](kj::Own<SecureStream> stream) mutable {
                    auto link = kj::heap<PeerLink>();
                    link->stream = kj::mv(stream);
                    link->client = kj::heap<capnp::TwoPartyClient>(*link->stream);
                    auto gate = link->client->bootstrap().castAs<rpc::Gate>();
                    auto challenge = gate.challengeRequest().send();
                    return challenge.then([&key, gate, link = kj::mv(link), addr = kj::mv(addr)](
                                              capnp::Response<rpc::Gate::ChallengeResults> r) mutable {
                      auto req = gate.loginRequest();
                      req.setProof(key.proof(kClientLabel, r.getNonce()));
                      auto myNonce = randomBytes(32);
                      req.setClientNonce(myNonce);
                      return req.send().then(
                          [&key, link = kj::mv(link), myNonce = kj::mv(myNonce), addr = kj::mv(addr)](
                              capnp::Response<rpc::Gate::LoginResults> r) mutable {
                            if (!key.check(kServerLabel, myNonce, r.getProof())) {
                              fail(kj::str(addr, " answered without the cluster key: not one of ours"));
                            }
                            link->node = r.getNode();
                            return kj::mv(link);
                          });
                    });
                  });
  auto timeout = io.provider->getTimer().afterDelay(timeoutMs * kj::MILLISECONDS).then([addr = kj::str(address)]() -> kj::Own<PeerLink> {
    fail(kj::str("no answer from ", addr, " (is shadowd running there?)"));
  });
  return work.exclusiveJoin(kj::mv(timeout));
}

}  // namespace mig::shadow
