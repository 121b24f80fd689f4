// The encrypted, authenticated stream every host-to-host TCP connection runs in
// (transfers, the relayed link home, every call between shadowds): nothing of what the
// peers say is readable or alterable on the wire.
//
// Handshake (both sides at once, then each waits for the other):
//   hello    = "mig-link" | version | mode | ephemeral X25519 public key   (in clear)
//   finished = the first record each way: the hash of both hellos, encrypted
// Each direction's key is BLAKE2b keyed with the link secret (derived from the cluster
// key) over the direction, the X25519 shared keys of the two ephemeral key pairs
// (crypto_kx: forward secrecy) and the hash of both hellos. A peer without the cluster
// key cannot make a `finished` the other side accepts: the handshake fails and the
// connection is dropped before Cap'n Proto reads a byte of it.
//
// The cipher: AES-256-GCM when both hellos offer it, else ChaCha20-Poly1305 (IETF)
// (record_cipher.h). The offer is the top bit of the hello's X25519 key, which X25519
// ignores (RFC 7748 masks it) and earlier builds never set: an earlier peer does not
// offer, computes the same shared secret, and links with ChaCha20-Poly1305. Both ends
// hash the hellos as sent (crypto_kx's keys too), so a flipped offer fails `finished`.
// A host offers when OpenSSL loads and the CPU has AES-NI (record_cipher.h).
//
// Records: length (4 bytes, little endian, authenticated as associated data) |
// ciphertext | 16-byte tag; the nonce is the record's number
// in its direction, never sent. A flipped bit, a replayed, dropped or reordered record
// fails the tag: the read fails (DISCONNECTED) and nothing of the record is delivered.
// Writes are batched into records of up to 64 KiB.
//
// --insecure-plaintext-links (benchmarks only): both hellos say "plaintext" and the
// bytes after them pass in clear. A peer that asks for the other mode is refused.
#pragma once

#include "shadow/record_cipher.h"
#include "shadow/wrapped_stream.h"

#include <kj/async-io.h>

namespace mig::shadow {

class ClusterKey;

enum class LinkMode : uint8_t { ENCRYPTED = 0, PLAINTEXT = 1 };

// What both ends of a link need: the 32-byte link secret and the mode.
struct LinkSecret {
  kj::Array<kj::byte> key;  // empty: this host has no cluster key (every handshake fails)
  LinkMode mode = LinkMode::ENCRYPTED;
  CipherCode cipher = CipherCode::ANY;  // which library seals (tests pin one; same bytes)
  bool offerAesGcm = true;  // false: hello as an earlier build's (tests)
};
LinkSecret linkSecret(const ClusterKey& key, LinkMode mode);

class SecureStream final : public WrappedStream {
 public:
  enum class Side : uint8_t { CONNECTOR, ACCEPTOR };
  // Largest plaintext per record.
  static constexpr size_t kMaxRecord = 64 * 1024;

  SecureStream(kj::Own<kj::AsyncIoStream> inner, Side side, const LinkSecret& secret);
  ~SecureStream() noexcept(false);

  // Runs the handshake; call once, before any read or write. Fails (DISCONNECTED) with
  // one line saying why: no cluster key, the peer's key differs, not a shadowd, modes
  // differ.
  kj::Promise<void> handshake();
  LinkMode mode() const { return mode_; }
  // The cipher the handshake chose (encrypted mode, after it).
  Algorithm algorithm() const { return sendKey_->algorithm(); }

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;

  // The wire size of a record carrying `plain` bytes (for tests).
  static size_t recordSize(size_t plain);
  // Seals record number `counter` of a direction keyed `key`, in place: `record` holds
  // the 4-byte length, then `len` bytes of plaintext, then room for the tag. Public for
  // the test that pins the wire format (peers of other builds must open it).
  static void sealRecord(const kj::byte key[32], uint64_t counter, kj::byte* record, size_t len,
                         CipherCode code = CipherCode::ANY, Algorithm algorithm = Algorithm::CHACHA20_POLY1305);

 private:
  struct Keys;
  kj::Promise<size_t> readMore(kj::byte* out, size_t minBytes, size_t maxBytes, size_t done);
  // Decrypts the next whole record in in_ (if there is one): into `out` if it fits in
  // `room` (`*written` says how much), else in place; false if the buffer holds no
  // whole record yet. Throws on a bad record.
  bool openRecord(kj::byte* out = nullptr, size_t room = 0, size_t* written = nullptr);
  // Where a write has got to in its pieces, and how many bytes are left.
  struct Cursor {
    size_t piece, offset, left;
  };
  // The next up to kOutRecords records of `pieces` from `at`, sealed into out_ (empty:
  // nothing left); `at` moves past them.
  kj::ArrayPtr<const kj::byte> seal(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces, Cursor& at);
  // Seals and sends `pieces` from `at`, a batch at a time.
  kj::Promise<void> writeFrom(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces, Cursor at);
  kj::Promise<void> readExactly(kj::byte* out, size_t n);
  // Reads until the peer's `finished` record is opened and checked.
  kj::Promise<void> readFinished();

  Side side_;
  LinkMode mode_;
  CipherCode cipher_;
  bool offerAesGcm_;
  kj::Array<kj::byte> secret_;
  kj::Own<Keys> keys_;                      // during the handshake
  kj::Own<RecordKey> sendKey_, recvKey_;  // after it
  bool ready_ = false;
  uint64_t sendCounter_ = 0;
  uint64_t recvCounter_ = 0;
  // Received wire bytes: [inBegin_, inEnd_) not yet opened; [plainBegin_, plainEnd_)
  // an opened record's plaintext not yet handed out.
  kj::Array<kj::byte> in_;
  size_t inBegin_ = 0, inEnd_ = 0, plainBegin_ = 0, plainEnd_ = 0;
  // Sealed records on their way out, kept from write to write: a stream has one write
  // at a time, and a fresh buffer per write is fresh pages (dear on VMs).
  kj::Array<kj::byte> out_;
};

}  // namespace mig::shadow
