// The cluster login's cryptography: proofs bind key, label and nonce; key files are
// refused when unsafe; tokens survive their hex form.
#include "shadow/cluster_key.h"
#include "shadow/hex.h"

#include <doctest/doctest.h>
#include <kj/function.h>

#include <cstring>

#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

struct KeyFile {
  std::string path;
  explicit KeyFile(const char* contents, mode_t mode = 0600) {
    char tmpl[] = "/tmp/mig-key-test.XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, contents, strlen(contents)) == static_cast<ssize_t>(strlen(contents)));
    fchmod(fd, mode);
    close(fd);
    path = tmpl;
  }
  ~KeyFile() { unlink(path.c_str()); }
};

bool has(const kj::String& text, const char* part) { return strstr(text.cStr(), part) != nullptr; }

kj::String errorOf(kj::Function<void()> f) {
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { f(); })) { return kj::str(e->getDescription()); }
  return kj::str("");
}

TEST_CASE("a proof checks only with the same key, label and nonce") {
  KeyFile a("0123456789abcdef-cluster-a"), b("0123456789abcdef-cluster-b");
  auto ka = ClusterKey::load(a.path.c_str()), kb = ClusterKey::load(b.path.c_str());
  auto nonce = randomBytes(32);
  auto proof = ka.proof("mig-login", nonce);
  CHECK(proof.size() == 32);
  CHECK(ka.check("mig-login", nonce, proof));
  CHECK_FALSE(kb.check("mig-login", nonce, proof));       // another cluster
  CHECK_FALSE(ka.check("mig-server", nonce, proof));      // a server proof is not a client proof
  auto other = randomBytes(32);
  CHECK_FALSE(ka.check("mig-login", other, proof));       // no replay on a fresh challenge
  proof[0] ^= 1;
  CHECK_FALSE(ka.check("mig-login", nonce, proof));
  CHECK_FALSE(ClusterKey::none().check("mig-login", nonce, proof));
}

// HMAC-SHA256 itself (RFC 4231 test cases 1 and 6): shadowds of other builds, which
// computed it with OpenSSL, must accept our proofs and we theirs.
TEST_CASE("a proof is HMAC-SHA256 of label and nonce, for short and long keys") {
  KeyFile shortKey(std::string(20, '\x0b').c_str());
  CHECK(hex(ClusterKey::load(shortKey.path.c_str()).proof("Hi", kj::str(" There").asBytes())) ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  KeyFile longKey(std::string(131, '\xaa').c_str());  // over the hash's block: hashed first
  CHECK(hex(ClusterKey::load(longKey.path.c_str()).proof("Test Using Larger Than Block-Size Key - Hash Key First", nullptr)) ==
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST_CASE("unsafe or missing key files are refused with the way out") {
  KeyFile shortKey("tiny");
  CHECK(has(errorOf([&]() { ClusterKey::load(shortKey.path.c_str()); }), "shorter than 16 bytes"));
  KeyFile open("0123456789abcdef-readable", 0644);
  CHECK(has(errorOf([&]() { ClusterKey::load(open.path.c_str()); }), "chmod 600"));
  CHECK(has(errorOf([&]() { ClusterKey::load("/nonexistent/key"); }), "cannot read the cluster key"));
}

TEST_CASE("tokens round-trip through hex and bad hex is refused") {
  auto token = randomBytes(32);
  auto text = hex(token);
  CHECK(text.size() == 64);
  auto back = unhex(text);
  CHECK(sameBytes(back, token));
  CHECK(errorOf([]() { unhex("abc"); }).size() > 0);
  CHECK(errorOf([]() { unhex("zz"); }).size() > 0);
}

}  // namespace
}  // namespace mig::shadow
