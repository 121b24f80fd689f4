// See record_cipher.h. OpenSSL's functions are resolved from libcrypto.so.3 once per
// process, typed from its own header (only the header is needed to build); each
// direction keeps one EVP_CIPHER_CTX keyed once, and each record only sets its nonce,
// as TLS 1.3 does.
#include "shadow/record_cipher.h"

#include <kj/debug.h>
#include <openssl/evp.h>
#include <sodium.h>

#include <dlfcn.h>

#include <cstring>
#include <type_traits>

namespace mig::shadow {
namespace {

constexpr size_t kNonce = 12;

void nonceFor(uint64_t counter, kj::byte nonce[kNonce]) {
  memset(nonce, 0, kNonce);
  for (int i = 0; i < 8; ++i) nonce[4 + i] = static_cast<kj::byte>(counter >> (8 * i));
}

struct OpenSsl {
  bool loaded = false;
  decltype(&EVP_CIPHER_CTX_new) ctxNew;
  decltype(&EVP_CIPHER_CTX_free) ctxFree;
  decltype(&EVP_CIPHER_CTX_ctrl) ctrl;
  decltype(&EVP_chacha20_poly1305) chacha;
  decltype(&EVP_aes_256_gcm) aesGcm;
  decltype(&EVP_CipherInit_ex) init;
  decltype(&EVP_CipherUpdate) update;
  decltype(&EVP_CipherFinal_ex) final;
};

const OpenSsl& openssl() {
  static const OpenSsl lib = []() {
    OpenSsl l{};
    // Never closed: the process keeps it for its later links.
    void* h = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) return l;
    auto get = [h](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      return fn != nullptr;
    };
    l.loaded = get(l.ctxNew, "EVP_CIPHER_CTX_new") && get(l.ctxFree, "EVP_CIPHER_CTX_free") &&
               get(l.ctrl, "EVP_CIPHER_CTX_ctrl") && get(l.chacha, "EVP_chacha20_poly1305") &&
               get(l.aesGcm, "EVP_aes_256_gcm") &&
               get(l.init, "EVP_CipherInit_ex") && get(l.update, "EVP_CipherUpdate") &&
               get(l.final, "EVP_CipherFinal_ex");
    return l;
  }();
  return lib;
}

// A context keyed for one way (enc 1: seal, 0: open); null if OpenSSL refuses.
void* keyedContext(const kj::byte* key, Algorithm algorithm, int enc) {
  auto& o = openssl();
  EVP_CIPHER_CTX* ctx = o.ctxNew();
  // Both take the 12-byte nonce by default.
  const EVP_CIPHER* cipher = algorithm == Algorithm::AES256_GCM ? o.aesGcm() : o.chacha();
  if (ctx != nullptr && o.init(ctx, cipher, nullptr, key, nullptr, enc) == 1) return ctx;
  if (ctx != nullptr) o.ctxFree(ctx);
  return nullptr;
}

}  // namespace

bool opensslAvailable() { return openssl().loaded; }

bool aesGcmFast() {
  return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") && opensslAvailable();
}

RecordKey::RecordKey(const kj::byte key[kKey], CipherCode code, Algorithm algorithm)
    : code_(code), algorithm_(algorithm) {
  KJ_REQUIRE(sodium_init() >= 0, "libsodium could not initialise");
  memcpy(key_, key, kKey);
  if (code_ == CipherCode::ANY) code_ = opensslAvailable() ? CipherCode::OPENSSL : CipherCode::LIBSODIUM;
  KJ_REQUIRE(code_ != CipherCode::OPENSSL || opensslAvailable(), "libcrypto.so.3 could not be loaded");
  KJ_REQUIRE(algorithm_ == Algorithm::CHACHA20_POLY1305 || code_ == CipherCode::OPENSSL,
             "AES-256-GCM links need libcrypto.so.3");
}

RecordKey::~RecordKey() {
  // EVP_CIPHER_CTX_free wipes the key schedule it holds.
  if (sealCtx_ != nullptr) openssl().ctxFree(static_cast<EVP_CIPHER_CTX*>(sealCtx_));
  if (openCtx_ != nullptr) openssl().ctxFree(static_cast<EVP_CIPHER_CTX*>(openCtx_));
  sodium_memzero(key_, sizeof(key_));
}

void RecordKey::seal(uint64_t counter, const kj::byte* aad, size_t aadLen, kj::byte* body, size_t len, kj::byte* tag) {
  begin(counter, aad, aadLen);
  add(body, len, body);
  finish(body, len, tag);
}

void RecordKey::begin(uint64_t counter, const kj::byte* aad, size_t aadLen) {
  counter_ = counter;
  aad_ = aad;
  aadLen_ = aadLen;
  if (code_ == CipherCode::LIBSODIUM) return;
  kj::byte nonce[kNonce];
  nonceFor(counter, nonce);
  auto& o = openssl();
  if (sealCtx_ == nullptr) sealCtx_ = keyedContext(key_, algorithm_, 1);
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(sealCtx_);
  int n = 0;
  // A failure here is OpenSSL out of memory or broken: never send an unsealed record.
  KJ_ASSERT(ctx != nullptr && o.init(ctx, nullptr, nullptr, nullptr, nonce, 1) == 1 &&
                o.update(ctx, nullptr, &n, aad, static_cast<int>(aadLen)) == 1,
            "OpenSSL could not seal a link record");
}

void RecordKey::add(const kj::byte* in, size_t n, kj::byte* out) {
  if (n == 0) return;
  if (code_ == CipherCode::LIBSODIUM) {
    if (out != in) memcpy(out, in, n);
    return;
  }
  int written = 0;
  // Both are stream ciphers (GCM is counter mode): OpenSSL seals each part whole,
  // whatever its length.
  KJ_ASSERT(openssl().update(static_cast<EVP_CIPHER_CTX*>(sealCtx_), out, &written, in, static_cast<int>(n)) == 1 &&
                written == static_cast<int>(n),
            "OpenSSL could not seal a link record");
}

void RecordKey::finish(kj::byte* body, size_t len, kj::byte* tag) {
  if (code_ == CipherCode::LIBSODIUM) {
    kj::byte nonce[kNonce];
    nonceFor(counter_, nonce);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(body, tag, nullptr, body, len, aad_, aadLen_, nullptr, nonce, key_);
    return;
  }
  auto& o = openssl();
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(sealCtx_);
  int n = 0;
  KJ_ASSERT(o.final(ctx, body + len, &n) == 1 && n == 0 && o.ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTag, tag) == 1,
            "OpenSSL could not seal a link record");
}

bool RecordKey::open(uint64_t counter, const kj::byte* aad, size_t aadLen, const kj::byte* in, size_t len,
                     const kj::byte* tag, kj::byte* out) {
  kj::byte nonce[kNonce];
  nonceFor(counter, nonce);
  if (code_ == CipherCode::LIBSODIUM) {
    // On a bad tag libsodium writes nothing of the record but zeros into out.
    return crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, nullptr, in, len, tag, aad, aadLen, nonce, key_) == 0;
  }
  auto& o = openssl();
  if (openCtx_ == nullptr) openCtx_ = keyedContext(key_, algorithm_, 0);
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(openCtx_);
  int n = 0, last = 0;
  bool ok = ctx != nullptr && o.init(ctx, nullptr, nullptr, nullptr, nonce, 0) == 1 &&
            o.update(ctx, nullptr, &n, aad, static_cast<int>(aadLen)) == 1 &&
            o.update(ctx, out, &n, in, static_cast<int>(len)) == 1 &&
            o.ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kTag, const_cast<kj::byte*>(tag)) == 1 &&
            o.final(ctx, out + n, &last) == 1;
  // OpenSSL decrypts before it checks the tag: nothing unauthenticated is left behind.
  if (!ok) sodium_memzero(out, len);
  return ok;
}

}  // namespace mig::shadow
