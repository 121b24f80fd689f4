// Client side of the cluster login (rsc/mig.capnp, Gate): connects to a shadowd's
// TCP address, proves it holds the cluster key, checks that the server does too, and
// gives the authenticated Node. Used by shadowd (to reach its peers) and by
// `migctl send` (to stream an image).
#pragma once

#include "shadow/cluster_key.h"
#include "shadow/mig.capnp.h"
#include "shadow/secure_stream.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

namespace mig::shadow {

struct PeerLink {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> client;
  rpc::Node::Client node = nullptr;
};

// "host:port" → a logged-in link, inside the link stream (secure_stream.h) in `mode`.
// Fails (kj exception) with a one-line reason: unreachable, refused, wrong key, not a
// shadowd, the other link mode; gives up after `timeoutMs`. `watched`: the connection
// is watched for liveness (direct_link.h watchLiveness), for a job's relayed link home
// that resumes.
kj::Promise<kj::Own<PeerLink>> loginToPeer(kj::AsyncIoContext& io, const ClusterKey& key, LinkMode mode,
                                           kj::StringPtr address, uint64_t timeoutMs = 10000, bool watched = false);

// The labels of the two HMAC proofs (see Gate in rsc/mig.capnp).
inline constexpr const char* kClientLabel = "mig-login";
inline constexpr const char* kServerLabel = "mig-server";

}  // namespace mig::shadow
