// See secure_stream.h. The handshake is libsodium's: crypto_kx (X25519) and
// crypto_generichash (BLAKE2b); the records' ChaCha20-Poly1305 is record_cipher.h's
// (OpenSSL's when libcrypto loads, else libsodium's: the same bytes either way, and the
// construction earlier builds sealed with). A record is sealed from the writer's pieces
// into the wire buffer (libsodium: copied there first, sealed in place); it is opened
// straight into the reader's buffer when it fits there (else in place).
#include "shadow/secure_stream.h"

#include "shadow/cluster_key.h"

#include <kj/debug.h>
#include <sodium.h>

#include <cstring>

namespace mig::shadow {
namespace {

constexpr kj::byte kMagic[8] = {'m', 'i', 'g', '-', 'l', 'i', 'n', 'k'};
constexpr kj::byte kVersion = 1;
constexpr size_t kHelloSize = sizeof(kMagic) + 2 + crypto_kx_PUBLICKEYBYTES;
constexpr size_t kHeader = 4;
constexpr size_t kTag = RecordKey::kTag;
constexpr size_t kHash = 32;
// In the hello's last byte, the X25519 key's top bit: this end offers AES-256-GCM.
constexpr kj::byte kOffersAesGcm = 0x80;
// Room for a whole record of the largest size and the next record's start, so that one
// read from the socket can bring several small records (four records' room measured no
// better on the forwarded writes, bench/stream_bench and migration_bench.sh big).
constexpr size_t kInBuffer = 2 * (kHeader + SecureStream::kMaxRecord + kTag);
// Records sealed before they go to the socket together: few write calls, little memory.
constexpr size_t kOutRecords = 4;

void initSodium() {
  // Idempotent and thread-safe; fails only if the system has no entropy source.
  KJ_REQUIRE(sodium_init() >= 0, "libsodium could not initialise");
}

void putLength(kj::byte* p, uint32_t n) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<kj::byte>(n >> (8 * i));
}

uint32_t getLength(const kj::byte* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

[[noreturn]] void disconnected(kj::StringPtr why) {
  kj::throwFatalException(kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__, kj::str(why)));
}

const char* modeName(LinkMode m) {
  return m == LinkMode::PLAINTEXT ? "plaintext links (--insecure-plaintext-links)" : "encrypted links";
}

}  // namespace

// The per-direction keys and the handshake's ephemeral key pair, wiped when dropped.
struct SecureStream::Keys {
  kj::byte send[32];
  kj::byte recv[32];
  kj::byte publicKey[crypto_kx_PUBLICKEYBYTES];
  kj::byte secretKey[crypto_kx_SECRETKEYBYTES];
  kj::byte hello[kHelloSize];      // ours
  kj::byte peerHello[kHelloSize];  // theirs
  kj::byte transcript[kHash];      // hash of the connector's hello, then the acceptor's
  ~Keys() { sodium_memzero(this, sizeof(*this)); }
};

LinkSecret linkSecret(const ClusterKey& key, LinkMode mode) {
  initSodium();
  LinkSecret s;
  s.mode = mode;
  // Not the key itself: a value only links use, so that a link key and a login proof
  // are never the same bytes.
  if (key.present()) s.key = key.proof("mig-link-secret", nullptr);
  return s;
}

size_t SecureStream::recordSize(size_t plain) { return kHeader + plain + kTag; }

void SecureStream::sealRecord(const kj::byte key[32], uint64_t counter, kj::byte* record, size_t len, CipherCode code,
                              Algorithm algorithm) {
  RecordKey(key, code, algorithm).seal(counter, record, kHeader, record + kHeader, len, record + kHeader + len);
}

SecureStream::SecureStream(kj::Own<kj::AsyncIoStream> inner, Side side, const LinkSecret& secret)
    : WrappedStream(kj::mv(inner)), side_(side), mode_(secret.mode), cipher_(secret.cipher),
      offerAesGcm_(secret.offerAesGcm), secret_(kj::heapArray<kj::byte>(secret.key)) {
  initSodium();
}

SecureStream::~SecureStream() noexcept(false) {
  if (secret_.size() > 0) sodium_memzero(secret_.begin(), secret_.size());
}

kj::Promise<void> SecureStream::readExactly(kj::byte* out, size_t n) {
  return inner_->tryRead(out, n, n).then([n](size_t got) {
    if (got < n) disconnected("the peer closed the connection during the link handshake (a shadowd that refused us, or not a shadowd)");
  });
}

kj::Promise<void> SecureStream::handshake() {
  KJ_REQUIRE(keys_.get() == nullptr && !ready_, "handshake() called twice");
  if (mode_ == LinkMode::ENCRYPTED && secret_.size() == 0) {
    disconnected("this shadowd has no cluster key: it cannot open encrypted links (--cluster-key FILE)");
  }
  keys_ = kj::heap<Keys>();
  auto& k = *keys_;
  crypto_kx_keypair(k.publicKey, k.secretKey);
  memcpy(k.hello, kMagic, sizeof(kMagic));
  k.hello[sizeof(kMagic)] = kVersion;
  k.hello[sizeof(kMagic) + 1] = static_cast<kj::byte>(mode_);
  memcpy(k.hello + sizeof(kMagic) + 2, k.publicKey, sizeof(k.publicKey));
  // The offer of AES-256-GCM (see the header); a library pinned to libsodium cannot.
  if (mode_ == LinkMode::ENCRYPTED && offerAesGcm_ && cipher_ != CipherCode::LIBSODIUM && aesGcmFast()) {
    k.hello[kHelloSize - 1] |= kOffersAesGcm;
  }

  // Both hellos cross at once: each side writes, then reads.
  auto sent = inner_->write(k.hello, kHelloSize);
  return sent
      .then([this]() { return readExactly(keys_->peerHello, kHelloSize); })
      .then([this]() -> kj::Promise<void> {
        auto& k = *keys_;
        if (memcmp(k.peerHello, kMagic, sizeof(kMagic)) != 0) {
          disconnected("the peer does not speak mig's link protocol (not a shadowd, or one older than encrypted links)");
        }
        if (k.peerHello[sizeof(kMagic)] != kVersion) {
          disconnected(kj::str("the peer speaks link version ", k.peerHello[sizeof(kMagic)], ", this shadowd ",
                               kVersion, ": run the same mig on both hosts"));
        }
        kj::byte modeByte = k.peerHello[sizeof(kMagic) + 1];
        if (modeByte > static_cast<kj::byte>(LinkMode::PLAINTEXT)) {
          disconnected(kj::str("the peer asks for link mode ", modeByte, ", which no shadowd knows: dropped"));
        }
        auto peerMode = static_cast<LinkMode>(modeByte);
        if (peerMode != mode_) {
          disconnected(kj::str("the peer wants ", modeName(peerMode), ", this shadowd ", modeName(mode_),
                               ": start both with the same setting"));
        }
        if (mode_ == LinkMode::PLAINTEXT) {
          keys_ = nullptr;
          ready_ = true;
          return kj::READY_NOW;
        }

        const kj::byte* connectorHello = side_ == Side::CONNECTOR ? k.hello : k.peerHello;
        const kj::byte* acceptorHello = side_ == Side::CONNECTOR ? k.peerHello : k.hello;
        crypto_generichash_state h;
        crypto_generichash_init(&h, nullptr, 0, kHash);
        crypto_generichash_update(&h, connectorHello, kHelloSize);
        crypto_generichash_update(&h, acceptorHello, kHelloSize);
        crypto_generichash_final(&h, k.transcript, kHash);

        // The X25519 shared secret, split by crypto_kx into one key per direction. Both
        // public keys as the hellos carry them, offer bit and all: crypto_kx hashes them,
        // and X25519 ignores the bit.
        kj::byte rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
        const kj::byte* ownPublic = k.hello + sizeof(kMagic) + 2;
        const kj::byte* peerPublic = k.peerHello + sizeof(kMagic) + 2;
        int kx = side_ == Side::CONNECTOR
                     ? crypto_kx_client_session_keys(rx, tx, ownPublic, k.secretKey, peerPublic)
                     : crypto_kx_server_session_keys(rx, tx, ownPublic, k.secretKey, peerPublic);
        if (kx != 0) disconnected("the peer sent an invalid public key in the link handshake");
        // Each direction's key binds the cluster key, the fresh shared secret and both hellos.
        auto derive = [&](kj::byte out[32], const kj::byte* shared, bool connectorToAcceptor) {
          const char* label = connectorToAcceptor ? "mig-link connector->acceptor" : "mig-link acceptor->connector";
          crypto_generichash_state d;
          crypto_generichash_init(&d, secret_.begin(), secret_.size(), 32);
          crypto_generichash_update(&d, reinterpret_cast<const kj::byte*>(label), strlen(label));
          crypto_generichash_update(&d, shared, crypto_kx_SESSIONKEYBYTES);
          crypto_generichash_update(&d, k.transcript, kHash);
          crypto_generichash_final(&d, out, 32);
        };
        bool connector = side_ == Side::CONNECTOR;
        derive(k.send, tx, connector);
        derive(k.recv, rx, !connector);
        sodium_memzero(rx, sizeof(rx));
        sodium_memzero(tx, sizeof(tx));
        sodium_memzero(k.secretKey, sizeof(k.secretKey));
        auto algorithm = (k.hello[kHelloSize - 1] & k.peerHello[kHelloSize - 1] & kOffersAesGcm) != 0
                             ? Algorithm::AES256_GCM
                             : Algorithm::CHACHA20_POLY1305;
        sendKey_ = kj::heap<RecordKey>(k.send, cipher_, algorithm);
        recvKey_ = kj::heap<RecordKey>(k.recv, cipher_, algorithm);

        // `finished`: the transcript, sealed. Only a holder of the cluster key can make
        // one the other side opens.
        in_ = kj::heapArray<kj::byte>(kInBuffer);
        out_ = kj::heapArray<kj::byte>(kOutRecords * recordSize(kMaxRecord));
        kj::ArrayPtr<const kj::byte> piece(k.transcript, kHash);
        Cursor all{0, 0, kHash};
        auto wire = seal(kj::arrayPtr(&piece, 1), all);
        return inner_->write(wire.begin(), wire.size()).then([this]() { return readFinished(); });
      });
}

kj::Promise<void> SecureStream::readFinished() {
  static constexpr const char* kNoKey =
      "the peer does not hold this cluster's key (its link handshake does not verify): dropped";
  bool opened = false;
  // The first record must be the peer's 32-byte `finished`; anything else, or one that
  // does not open with the keys we derived, means another key (or an altered hello).
  if (inEnd_ - inBegin_ >= kHeader && getLength(in_.begin() + inBegin_) != kHash) disconnected(kNoKey);
  if (kj::runCatchingExceptions([&]() { opened = openRecord(); }) != nullptr) disconnected(kNoKey);
  if (opened) {
    if (plainEnd_ - plainBegin_ != kHash || sodium_memcmp(in_.begin() + plainBegin_, keys_->transcript, kHash) != 0) {
      disconnected(kNoKey);
    }
    plainBegin_ = plainEnd_;
    keys_ = nullptr;
    ready_ = true;
    return kj::READY_NOW;
  }
  return inner_->tryRead(in_.begin() + inEnd_, 1, in_.size() - inEnd_).then([this](size_t n) -> kj::Promise<void> {
    if (n == 0) disconnected("the peer closed the connection during the link handshake (it may not hold this cluster's key)");
    inEnd_ += n;
    return readFinished();
  });
}

bool SecureStream::openRecord(kj::byte* out, size_t room, size_t* written) {
  size_t avail = inEnd_ - inBegin_;
  if (avail < kHeader) return false;
  kj::byte* p = in_.begin() + inBegin_;
  uint32_t len = getLength(p);
  if (len > kMaxRecord) {
    disconnected(kj::str("the peer sent a record of ", len, " bytes, more than any shadowd sends (altered on the way?): connection closed"));
  }
  if (avail < kHeader + len + kTag) return false;
  // Straight into the reader's buffer when the whole record fits (no copy after),
  // else in place, handed out from there.
  bool direct = out != nullptr && len <= room;
  kj::byte* dest = direct ? out : p + kHeader;
  // On a bad tag nothing of the record is left in dest (zeros).
  if (!recvKey_->open(recvCounter_, p, kHeader, p + kHeader, len, p + kHeader + len, dest)) {
    disconnected("a record from the peer failed its integrity check (altered, replayed or reordered on the way): connection closed");
  }
  ++recvCounter_;
  if (direct) {
    *written = len;
    plainBegin_ = plainEnd_ = 0;
  } else {
    plainBegin_ = inBegin_ + kHeader;
    plainEnd_ = plainBegin_ + len;
  }
  inBegin_ += kHeader + len + kTag;
  return true;
}

kj::ArrayPtr<const kj::byte> SecureStream::seal(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces, Cursor& at) {
  kj::byte* out = out_.begin();
  for (size_t records = 0; records < kOutRecords && at.left > 0; ++records) {
    size_t len = kj::min(at.left, kMaxRecord);
    putLength(out, static_cast<uint32_t>(len));
    kj::byte* body = out + kHeader;
    // Each part sealed from where it lies into the wire buffer (no copy first).
    sendKey_->begin(sendCounter_++, out, kHeader);
    for (size_t filled = 0; filled < len;) {
      auto& piece = pieces[at.piece];
      size_t n = kj::min(piece.size() - at.offset, len - filled);
      sendKey_->add(piece.begin() + at.offset, n, body + filled);
      filled += n;
      at.offset += n;
      if (at.offset == piece.size()) {
        ++at.piece;
        at.offset = 0;
      }
    }
    sendKey_->finish(body, len, body + len);
    out += kHeader + len + kTag;
    at.left -= len;
  }
  return kj::arrayPtr(out_.begin(), out);
}

kj::Promise<void> SecureStream::write(const void* buffer, size_t size) {
  KJ_REQUIRE(ready_, "write before the link handshake completed");
  if (mode_ == LinkMode::PLAINTEXT) return inner_->write(buffer, size);
  // The batches after the first still read the one-piece array: it lives as long.
  auto piece = kj::heap<kj::ArrayPtr<const kj::byte>>(static_cast<const kj::byte*>(buffer), size);
  auto pieces = kj::arrayPtr(piece.get(), 1);
  return writeFrom(pieces, Cursor{0, 0, size}).attach(kj::mv(piece));
}

kj::Promise<void> SecureStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  KJ_REQUIRE(ready_, "write before the link handshake completed");
  if (mode_ == LinkMode::PLAINTEXT) return inner_->write(pieces);
  size_t total = 0;
  for (auto& piece : pieces) total += piece.size();
  return writeFrom(pieces, Cursor{0, 0, total});
}

kj::Promise<void> SecureStream::writeFrom(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces, Cursor at) {
  auto wire = seal(pieces, at);
  if (wire.size() == 0) return kj::READY_NOW;
  return inner_->write(wire.begin(), wire.size()).then([this, pieces, at]() { return writeFrom(pieces, at); });
}

kj::Promise<size_t> SecureStream::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  KJ_REQUIRE(ready_, "read before the link handshake completed");
  if (mode_ == LinkMode::PLAINTEXT) return inner_->tryRead(buffer, minBytes, maxBytes);
  return readMore(static_cast<kj::byte*>(buffer), minBytes, maxBytes, 0);
}

kj::Promise<size_t> SecureStream::readMore(kj::byte* out, size_t minBytes, size_t maxBytes, size_t done) {
  for (;;) {
    if (plainBegin_ < plainEnd_ && done < maxBytes) {
      size_t n = kj::min(plainEnd_ - plainBegin_, maxBytes - done);
      memcpy(out + done, in_.begin() + plainBegin_, n);
      plainBegin_ += n;
      done += n;
    }
    if (done >= minBytes && (done > 0 || minBytes == 0)) return done;
    // Every opened byte is handed out: open the next record, if it is all here.
    size_t written = 0;
    if (!openRecord(out + done, maxBytes - done, &written)) break;
    done += written;
  }
  if (inBegin_ > 0) {
    memmove(in_.begin(), in_.begin() + inBegin_, inEnd_ - inBegin_);
    inEnd_ -= inBegin_;
    inBegin_ = 0;
    plainBegin_ = plainEnd_ = 0;
  }
  return inner_->tryRead(in_.begin() + inEnd_, 1, in_.size() - inEnd_)
      .then([this, out, minBytes, maxBytes, done](size_t n) -> kj::Promise<size_t> {
        if (n == 0) {
          if (inEnd_ > inBegin_) disconnected("the peer closed the connection in the middle of a record: connection closed");
          return done;  // end of stream at a record boundary
        }
        inEnd_ += n;
        return readMore(out, minBytes, maxBytes, done);
      });
}

}  // namespace mig::shadow
