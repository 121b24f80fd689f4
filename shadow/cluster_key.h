// The cluster key: a shared secret every shadowd of a cluster holds. A peer proves it
// holds the key by answering a fresh challenge with HMAC-SHA256(key, label || nonce);
// the key itself never crosses the network. Also the random source for nonces and
// job tokens.
#pragma once

#include <kj/array.h>
#include <kj/string.h>

namespace mig::shadow {

class ClusterKey {
 public:
  // Reads the key file (at least 16 bytes; its whole contents are the key). Throws a
  // one-line reason: missing, unreadable, too short, readable by others.
  static ClusterKey load(kj::StringPtr path);
  // No key: logins are refused (allowed only for loopback-only daemons).
  static ClusterKey none() { return ClusterKey(nullptr); }

  bool present() const { return key_.size() > 0; }
  kj::Array<kj::byte> proof(kj::StringPtr label, kj::ArrayPtr<const kj::byte> nonce) const;
  bool check(kj::StringPtr label, kj::ArrayPtr<const kj::byte> nonce, kj::ArrayPtr<const kj::byte> proof) const;

 private:
  explicit ClusterKey(kj::Array<kj::byte> key) : key_(kj::mv(key)) {}
  kj::Array<kj::byte> key_;
};

kj::Array<kj::byte> randomBytes(size_t n);
// Constant-time comparison.
bool sameBytes(kj::ArrayPtr<const kj::byte> a, kj::ArrayPtr<const kj::byte> b);

}  // namespace mig::shadow
