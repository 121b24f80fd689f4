// The links' record ciphers (secure_stream.h), one key per direction: ChaCha20-Poly1305
// (IETF, RFC 8439), sealed and opened by OpenSSL's libcrypto when it loads, else by
// libsodium (the same bytes, so hosts of either kind link), or AES-256-GCM, by OpenSSL
// only, which two ends use when both offer it (secure_stream.h, handshake). OpenSSL's
// assembly is 2.4x libsodium 1.0.18's on the test VM (3.4-3.7 against 1.5 GB/s a side for
// 64 KiB records: bench/cipher_bench), and its AES-256-GCM 1.25x its ChaCha20-Poly1305
// on this CPU's AES-NI (4.5 against 3.6 GB/s, `openssl speed`), which is most of what a
// link's encryption costs.
// libcrypto is loaded with dlopen at the first link a process makes, not linked: migctl
// carries this code for `migctl send` and every `migctl restart` would otherwise pay
// for libcrypto's constructors and relocations (issue 14).
#pragma once

#include <kj/common.h>

#include <cstddef>
#include <cstdint>

namespace mig::shadow {

enum class CipherCode : uint8_t { ANY, LIBSODIUM, OPENSSL };
// The construction; both give a 16-byte tag and take a 12-byte nonce.
enum class Algorithm : uint8_t { CHACHA20_POLY1305, AES256_GCM };

// One direction's key. Not copyable; wiped when dropped.
class RecordKey {
 public:
  static constexpr size_t kKey = 32;
  static constexpr size_t kTag = 16;
  // ANY: OpenSSL when libcrypto.so.3 loads, else libsodium. Throws if `code` asks for
  // a library this process cannot use, or libsodium for AES-256-GCM.
  RecordKey(const kj::byte key[kKey], CipherCode code = CipherCode::ANY,
            Algorithm algorithm = Algorithm::CHACHA20_POLY1305);
  ~RecordKey();
  KJ_DISALLOW_COPY(RecordKey);

  // Seals `len` bytes at `body` in place as record number `counter`, authenticating
  // `aad`; writes the tag to `tag`.
  void seal(uint64_t counter, const kj::byte* aad, size_t aadLen, kj::byte* body, size_t len, kj::byte* tag);
  // The same, from plaintext in parts (a message's segments): begin, then each part,
  // sealed to where the record's body goes on (`out`, contiguous from one part to the
  // next), then finish with the whole body. OpenSSL seals each part as it goes, with
  // no copy of the plaintext first; libsodium's one-shot call needs the copy.
  void begin(uint64_t counter, const kj::byte* aad, size_t aadLen);
  void add(const kj::byte* in, size_t n, kj::byte* out);
  void finish(kj::byte* body, size_t len, kj::byte* tag);
  // Opens `len` bytes at `in` (may be `out`) into `out`; false, with `out` zeroed, if
  // the tag does not match.
  bool open(uint64_t counter, const kj::byte* aad, size_t aadLen, const kj::byte* in, size_t len, const kj::byte* tag,
            kj::byte* out);
  CipherCode code() const { return code_; }
  Algorithm algorithm() const { return algorithm_; }

 private:
  CipherCode code_;
  Algorithm algorithm_;
  kj::byte key_[kKey];
  void* sealCtx_ = nullptr;  // OpenSSL's EVP_CIPHER_CTX for each way, keyed once
  void* openCtx_ = nullptr;
  // The record begun (libsodium seals it whole at finish).
  uint64_t counter_ = 0;
  const kj::byte* aad_ = nullptr;
  size_t aadLen_ = 0;
};

// Whether libcrypto.so.3 loads here (loads it, once per process).
bool opensslAvailable();
// Whether AES-256-GCM is the faster cipher here: OpenSSL loads and the CPU has AES-NI
// and carry-less multiply (without them OpenSSL's AES-GCM is several times slower than
// its ChaCha20-Poly1305).
bool aesGcmFast();

}  // namespace mig::shadow
