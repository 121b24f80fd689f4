// See cluster_key.h. HMAC-SHA256 from OpenSSL's libcrypto.
#include "shadow/cluster_key.h"
#include "shadow/error.h"

#include <kj/debug.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

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
  auto message = kj::heapArray<kj::byte>(label.size() + nonce.size());
  memcpy(message.begin(), label.begin(), label.size());
  if (nonce.size() > 0) memcpy(message.begin() + label.size(), nonce.begin(), nonce.size());  // an empty one may be null
  auto out = kj::heapArray<kj::byte>(EVP_MAX_MD_SIZE);
  unsigned len = 0;
  require(HMAC(EVP_sha256(), key_.begin(), static_cast<int>(key_.size()), message.begin(), message.size(),
                  out.begin(), &len) != nullptr, "HMAC failed");
  return kj::heapArray<kj::byte>(out.begin(), len);
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
  return a.size() == b.size() && CRYPTO_memcmp(a.begin(), b.begin(), a.size()) == 0;
}

}  // namespace mig::shadow
