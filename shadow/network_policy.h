// The network policy of a migration (rpc::NetworkPolicy, `migctl migrate --local-net
// | --rebind`) as it travels between the tools: shadowd passes it to `migctl send`
// and `migctl restart` as `--network local|rebind`, and the shim gets it as
// forward::Config::network (the same numbers).
#pragma once

#include "shadow/mig.capnp.h"
#include "shim/forward/forward_config.h"

#include <kj/string.h>
#include <kj/vector.h>

namespace mig::shadow {

static_assert(static_cast<uint32_t>(rpc::NetworkPolicy::HOME) == forward::kNetworkHome &&
              static_cast<uint32_t>(rpc::NetworkPolicy::LOCAL) == forward::kNetworkLocal &&
              static_cast<uint32_t>(rpc::NetworkPolicy::REBIND) == forward::kNetworkRebind);

// `--network WORD` for a command line; nothing for the default.
inline void addNetworkArgs(kj::Vector<kj::String>& argv, rpc::NetworkPolicy policy) {
  if (policy == rpc::NetworkPolicy::HOME) return;
  argv.add(kj::str("--network"));
  argv.add(kj::str(policy == rpc::NetworkPolicy::LOCAL ? "local" : "rebind"));
}

// The policy `--network WORD` names; nullptr for anything but local and rebind.
inline kj::Maybe<rpc::NetworkPolicy> networkFromWord(kj::StringPtr word) {
  if (word == "local") return rpc::NetworkPolicy::LOCAL;
  if (word == "rebind") return rpc::NetworkPolicy::REBIND;
  return nullptr;
}

}  // namespace mig::shadow
