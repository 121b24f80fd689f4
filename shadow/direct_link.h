// The direct link home (issue 13): one Cap'n Proto connection per migrated job,
// between the relay on the host the job runs on and the job's deputy at home, so the
// job's calls no longer pass through the home shadowd (and survive its restart).
//
// Brokered by the shadowds over their logged-in, encrypted link: the relay asks home
// for a ticket (Node.directLink); home derives a key for this job and this ticket
// from the cluster key and hands it to the deputy over its owner-only Unix socket
// (Deputy.openDirectLink), the deputy listens for one connection, and home answers
// with the address and the key. The relay connects and both ends run the
// secure_stream handshake keyed with that key instead of the cluster key: only a
// holder of the ticket gets through, and neither the deputy nor the job ever holds
// the cluster key.
#pragma once

#include "shadow/mig.capnp.h"
#include "shadow/secure_stream.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/timer.h>

namespace mig::shadow {

class ClusterKey;

// The ticket's key: HMAC-SHA256(cluster key, "mig-direct-link" || job id || nonce).
kj::Array<kj::byte> directLinkKey(const ClusterKey& key, uint64_t jobId, kj::ArrayPtr<const kj::byte> nonce);

// The host part of "host:port" ("[::1]:7070" -> "[::1]").
kj::String hostOf(kj::StringPtr address);

// Where the deputy keeps its own fds (deputy/own_fds.h): `place` moves a new fd there
// (closing the one given; -1 on failure), `release` unmarks one once closed. Null: as
// the kernel gives them.
struct OwnFds {
  int (*place)(int fd) = nullptr;
  void (*release)(int fd) = nullptr;
};

// Deputy side: listens on `host` (port chosen by the kernel), and serves `bootstrap`
// on the first connection that completes the handshake keyed with `secret` within
// `acceptTimeoutMs`; the listener closes after it (or the timeout). Returns the port;
// throws (one line) when it cannot listen. The link lives in `tasks` until it breaks.
kj::Promise<uint16_t> serveDirectLink(kj::LowLevelAsyncIoProvider& low, kj::Timer& timer, kj::StringPtr host,
                                      LinkSecret secret, capnp::Capability::Client bootstrap, kj::TaskSet& tasks,
                                      uint64_t acceptTimeoutMs, OwnFds own = {});

// Relay side: one direct link to a deputy.
class DirectLink {
 public:
  // Connects to `address`, runs the handshake keyed with `secret`.
  static kj::Promise<kj::Own<DirectLink>> connect(kj::Network& network, kj::StringPtr address, LinkSecret secret,
                                                   kj::Timer& timer, uint64_t timeoutMs);
  explicit DirectLink(kj::Own<kj::AsyncIoStream> stream);
  rpc::Deputy::Client deputy() { return deputy_; }
  kj::Promise<void> onDisconnect() { return client_.onDisconnect(); }

 private:
  kj::Own<kj::AsyncIoStream> stream_;
  capnp::TwoPartyClient client_;
  rpc::Deputy::Client deputy_;
};

}  // namespace mig::shadow
