// See cluster_key.h. HMAC-SHA256 (RFC 2104, any key length) from libsodium.
#include "shadow/cluster_key.h"
#include "shadow/error.h"

#include <kj/debug.h>
#include <sodium.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mig::shadow {

ClusterKey ClusterKey::load(kj::StringPtr path) {
  int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(kj::str("cannot read the cluster key ", path, ": ", strerror(errno)));
  KJ_DEFER(close(fd));
  struct stat st {};
  fstat(fd, &st);
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    fail(kj::str("cluster key ", path, " is readable by others: chmod 600 ", path));
  }
  kj::byte buf[4096];
  ssize_t n = read(fd, buf, sizeof(buf));
  if (n < 16) fail(kj::str("cluster key ", path, " is shorter than 16 bytes (make one: head -c 32 /dev/urandom > ", path, ")"));
  return ClusterKey(kj::heapArray<kj::byte>(buf, static_cast<size_t>(n)));
}

kj::Array<kj::byte> ClusterKey::proof(kj::StringPtr label, kj::ArrayPtr<const kj::byte> nonce) const {
  require(present(), "this shadowd has no cluster key (--cluster-key FILE)");
  auto out = kj::heapArray<kj::byte>(crypto_auth_hmacsha256_BYTES);
  crypto_auth_hmacsha256_state h;
  crypto_auth_hmacsha256_init(&h, key_.begin(), key_.size());
  crypto_auth_hmacsha256_update(&h, label.asBytes().begin(), label.size());
  if (nonce.size() > 0) crypto_auth_hmacsha256_update(&h, nonce.begin(), nonce.size());  // an empty one may be null
  crypto_auth_hmacsha256_final(&h, out.begin());
  sodium_memzero(&h, sizeof(h));
  return out;
}

bool ClusterKey::check(kj::StringPtr label, kj::ArrayPtr<const kj::byte> nonce,
                       kj::ArrayPtr<const kj::byte> given) const {
  if (!present()) return false;
  return sameBytes(proof(label, nonce), given);
}

kj::Array<kj::byte> randomBytes(size_t n) {
  auto out = kj::heapArray<kj::byte>(n);
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(out.begin() + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) fail(kj::str("getrandom failed: ", strerror(errno)));
    got += static_cast<size_t>(r);
  }
  return out;
}

bool sameBytes(kj::ArrayPtr<const kj::byte> a, kj::ArrayPtr<const kj::byte> b) {
  return a.size() == b.size() && sodium_memcmp(a.begin(), b.begin(), a.size()) == 0;
}

}  // namespace mig::shadow
