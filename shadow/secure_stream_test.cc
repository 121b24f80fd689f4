// The link stream: what goes in comes out whole and in order, whatever the sizes and
// however the reads and writes are cut; a peer with another key is refused; a record
// altered, replayed or reordered on the wire is never delivered.
#include "shadow/secure_stream.h"

#include "shadow/hex.h"
#include "shadow/prelogin_stream.h"

#include <doctest/doctest.h>

#include <kj/async-io.h>
#include <kj/vector.h>
#include <sodium.h>

#include <cstring>

namespace mig::shadow {
namespace {

constexpr size_t kHelloWire = 42;                   // magic, version, mode, X25519 key
const size_t kHandshakeWire = kHelloWire + SecureStream::recordSize(32);  // hello + finished

LinkSecret secret(char fill, LinkMode mode = LinkMode::ENCRYPTED, CipherCode cipher = CipherCode::ANY) {
  LinkSecret s;
  s.key = kj::heapArray<kj::byte>(32);
  memset(s.key.begin(), fill, 32);
  s.mode = mode;
  s.cipher = cipher;
  return s;
}

// Both libraries that seal records; every test of what the wire refuses runs with each.
constexpr CipherCode kCiphers[] = {CipherCode::OPENSSL, CipherCode::LIBSODIUM};
const char* name(CipherCode c) { return c == CipherCode::OPENSSL ? "OpenSSL" : "libsodium"; }

bool has(kj::StringPtr text, const char* part) { return strstr(text.cStr(), part) != nullptr; }

kj::Array<kj::byte> pattern(size_t n, unsigned seed) {
  auto a = kj::heapArray<kj::byte>(n);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    a[i] = static_cast<kj::byte>(x >> 16);
  }
  return a;
}

// Two ends joined directly.
struct Direct {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::TwoWayPipe pipe = io.provider->newTwoWayPipe();
  kj::Own<SecureStream> a, b;
  Direct(const LinkSecret& sa, const LinkSecret& sb) {
    a = kj::heap<SecureStream>(kj::mv(pipe.ends[0]), SecureStream::Side::CONNECTOR, sa);
    b = kj::heap<SecureStream>(kj::mv(pipe.ends[1]), SecureStream::Side::ACCEPTOR, sb);
  }
  void handshake() {
    auto ha = a->handshake();
    b->handshake().wait(io.waitScope);
    ha.wait(io.waitScope);
  }
};

// Two ends with the test in the middle, holding the wire: a -> (aWire | bWire) -> b.
struct OnPath {
  kj::AsyncIoContext& io;
  kj::TwoWayPipe left = io.provider->newTwoWayPipe();
  kj::TwoWayPipe right = io.provider->newTwoWayPipe();
  kj::Own<SecureStream> a, b;
  kj::Own<kj::AsyncIoStream> aWire, bWire;  // what a sends arrives on aWire; bWire reaches b
  explicit OnPath(kj::AsyncIoContext& io, CipherCode cipher = CipherCode::ANY) : io(io) {
    auto s = secret('k', LinkMode::ENCRYPTED, cipher);
    a = kj::heap<SecureStream>(kj::mv(left.ends[0]), SecureStream::Side::CONNECTOR, s);
    b = kj::heap<SecureStream>(kj::mv(right.ends[1]), SecureStream::Side::ACCEPTOR, s);
    aWire = kj::mv(left.ends[1]);
    bWire = kj::mv(right.ends[0]);
    // Pass the handshake through untouched.
    auto ha = a->handshake();
    auto hb = b->handshake();
    auto up = aWire->pumpTo(*bWire, kHandshakeWire);
    auto down = bWire->pumpTo(*aWire, kHandshakeWire);
    CHECK(up.wait(io.waitScope) == kHandshakeWire);
    CHECK(down.wait(io.waitScope) == kHandshakeWire);
    ha.wait(io.waitScope);
    hb.wait(io.waitScope);
  }
  // One record as a sent it, taken off the wire.
  kj::Array<kj::byte> sealed(kj::StringPtr text) {
    a->write(text.begin(), text.size()).wait(io.waitScope);
    auto wire = kj::heapArray<kj::byte>(SecureStream::recordSize(text.size()));
    aWire->read(wire.begin(), wire.size()).wait(io.waitScope);
    return wire;
  }
  void deliver(kj::ArrayPtr<const kj::byte> bytes) { bWire->write(bytes.begin(), bytes.size()).wait(io.waitScope); }
  kj::String receive(size_t n) {
    auto buf = kj::heapArray<char>(n + 1);
    b->read(buf.begin(), n).wait(io.waitScope);
    return kj::heapString(buf.begin(), n);
  }
};

kj::Array<kj::byte> readAll(SecureStream& s, kj::WaitScope& ws, size_t n, size_t chunk) {
  auto out = kj::heapArray<kj::byte>(n);
  size_t got = 0;
  while (got < n) {
    size_t r = s.tryRead(out.begin() + got, 1, kj::min(chunk, n - got)).wait(ws);
    if (r == 0) {
      FAIL("end of stream after ", got, " of ", n, " bytes");
    }
    got += r;
  }
  return out;
}

// `n` bytes of pattern `seed` written by b arrive whole at a, read `chunk` at a time.
void replyArrives(Direct& d, size_t n, unsigned seed, size_t chunk) {
  auto back = pattern(n, seed);
  auto replying = d.b->write(back.begin(), back.size());
  CHECK(readAll(*d.a, d.io.waitScope, n, chunk) == back);
  replying.wait(d.io.waitScope);
}

TEST_CASE("secure stream: every size comes through whole, both ways, however reads are cut") {
  Direct d(secret('k'), secret('k'));
  d.handshake();
  auto& ws = d.io.waitScope;
  const size_t K = SecureStream::kMaxRecord;
  size_t sizes[] = {1, 2, 31, 1000, K - 1, K, K + 1, 3 * K + 17, 1 << 20};
  size_t chunks[] = {1, 7, 4096, K, 1 << 21};
  unsigned seed = 0;
  for (size_t n : sizes) {
    for (size_t chunk : chunks) {
      if (chunk == 1 && n > 70000) continue;  // a byte at a time is slow, and K+1 covers it
      auto data = pattern(n, ++seed);
      auto sending = d.a->write(data.begin(), data.size());
      auto got = readAll(*d.b, ws, n, chunk);
      sending.wait(ws);
      CHECK_MESSAGE(got == data, "a->b size ", n, " read chunk ", chunk);
      auto back = pattern(n, ++seed);
      auto replying = d.b->write(back.begin(), back.size());
      auto gotBack = readAll(*d.a, ws, n, chunk);
      replying.wait(ws);
      CHECK_MESSAGE(gotBack == back, "b->a size ", n, " read chunk ", chunk);
    }
  }
}

TEST_CASE("secure stream: a write in many pieces is one run of bytes; many small writes arrive in order") {
  Direct d(secret('k'), secret('k'));
  d.handshake();
  auto& ws = d.io.waitScope;
  auto data = pattern(200000, 9);
  // Pieces of uneven sizes, like a Cap'n Proto message's segment table and segments.
  kj::Vector<kj::ArrayPtr<const kj::byte>> pieces;
  size_t cuts[] = {8, 1, 70000, 3, 65536, 0, 64000};
  size_t at = 0;
  for (size_t c : cuts) {
    pieces.add(data.slice(at, at + c));
    at += c;
  }
  pieces.add(data.slice(at, data.size()));
  auto sending = d.a->write(pieces.asPtr());
  CHECK(readAll(*d.b, ws, data.size(), 100000) == data);
  sending.wait(ws);

  // One write after the other (a stream takes one at a time), read as they come.
  auto small = kj::heapArray<kj::byte>(900);
  for (int i = 0; i < 300; ++i) {
    small[3 * i] = static_cast<kj::byte>(i);
    small[3 * i + 1] = static_cast<kj::byte>(i >> 8);
    small[3 * i + 2] = 0x5a;
  }
  kj::Promise<void> writes = kj::READY_NOW;
  for (int i = 0; i < 300; ++i) {
    writes = writes.then([&d, &small, i]() { return d.a->write(small.begin() + 3 * i, 3); });
  }
  auto got = readAll(*d.b, ws, 900, 1 << 20);
  writes.wait(ws);
  for (int i = 0; i < 300; ++i) {
    CHECK(got[3 * i] == static_cast<kj::byte>(i));
    CHECK(got[3 * i + 1] == static_cast<kj::byte>(i >> 8));
  }
}

// The wire format is fixed: a record sealed by an earlier build (OpenSSL's
// ChaCha20-Poly1305; then libsodium's) is byte for byte what this one seals with
// either library, so hosts of every build link.
TEST_CASE("secure stream: a record is sealed as earlier builds sealed it, by either library") {
  REQUIRE(opensslAvailable());  // libssl3, a dependency of libssl-dev (tests/lib/setup.sh)
  kj::byte key[32];
  for (int i = 0; i < 32; ++i) key[i] = static_cast<kj::byte>(i);
  kj::StringPtr text = "a record of the mig-link wire format";
  for (auto cipher : kCiphers) {
    auto record = kj::heapArray<kj::byte>(SecureStream::recordSize(text.size()));
    record[0] = static_cast<kj::byte>(text.size());  // the length, little endian
    record[1] = record[2] = record[3] = 0;
    memcpy(record.begin() + 4, text.begin(), text.size());
    SecureStream::sealRecord(key, 0x0102030405, record.begin(), text.size(), cipher);
    CHECK_MESSAGE(hex(record) ==
                      "2400000050a378b5b0a4c1a8f3726a09b86ac266cbbb996a8bf664cded3bbb28c75c7ccad23b39390f5b726d3975916e40cf79"
                      "62433fe218",
                  name(cipher));
  }
}

// One library's records open with the other's, record after record on one key (each
// record only resets the nonce of a context keyed once), at every size; a flipped bit
// or a wrong number fails in both, leaving nothing of the record behind.
TEST_CASE("secure stream: records of one library open with the other's; a bad one leaves nothing") {
  REQUIRE(opensslAvailable());
  kj::byte key[32];
  memset(key, 0x42, sizeof(key));
  const kj::byte aad[4] = {1, 2, 3, 4};
  size_t sizes[] = {0, 1, 15, 16, 17, 63, 64, 65, 1000, 4095, SecureStream::kMaxRecord};
  for (auto sealer : kCiphers) {
    auto opener = sealer == CipherCode::OPENSSL ? CipherCode::LIBSODIUM : CipherCode::OPENSSL;
    RecordKey seal(key, sealer), open(key, opener), sameLibrary(key, sealer);
    uint64_t counter = 7;
    for (size_t n : sizes) {
      CAPTURE(name(sealer));
      CAPTURE(n);
      auto plain = pattern(n, static_cast<unsigned>(n));
      auto body = kj::heapArray<kj::byte>(plain.asPtr());
      kj::byte tag[RecordKey::kTag];
      seal.seal(counter, aad, sizeof(aad), body.begin(), n, tag);
      CHECK((n < 16 || memcmp(body.begin(), plain.begin(), n) != 0));
      auto out = kj::heapArray<kj::byte>(n + 1);
      REQUIRE(open.open(counter, aad, sizeof(aad), body.begin(), n, tag, out.begin()));
      CHECK(memcmp(out.begin(), plain.begin(), n) == 0);
      REQUIRE(sameLibrary.open(counter, aad, sizeof(aad), body.begin(), n, tag, out.begin()));
      CHECK(memcmp(out.begin(), plain.begin(), n) == 0);

      for (auto* checker : {&open, &sameLibrary}) {
        memset(out.begin(), 0xee, n);
        CHECK_FALSE(checker->open(counter + 1, aad, sizeof(aad), body.begin(), n, tag, out.begin()));  // replayed elsewhere
        bool zeroed = true;
        for (size_t i = 0; i < n; ++i) zeroed = zeroed && out[i] == 0;
        CHECK(zeroed);
        if (n > 0) {
          body[n / 2] ^= 0x80;
          CHECK_FALSE(checker->open(counter, aad, sizeof(aad), body.begin(), n, tag, out.begin()));
          body[n / 2] ^= 0x80;
        }
        kj::byte otherAad[4] = {1, 2, 3, 5};
        CHECK_FALSE(checker->open(counter, otherAad, sizeof(otherAad), body.begin(), n, tag, out.begin()));
      }
      // In place, as a record the reader cannot take whole is opened.
      REQUIRE(open.open(counter, aad, sizeof(aad), body.begin(), n, tag, body.begin()));
      CHECK(memcmp(body.begin(), plain.begin(), n) == 0);
      ++counter;
    }
  }
}

TEST_CASE("secure stream: ends sealing with different libraries link and carry every size") {
  REQUIRE(opensslAvailable());
  Direct d(secret('k', LinkMode::ENCRYPTED, CipherCode::OPENSSL), secret('k', LinkMode::ENCRYPTED, CipherCode::LIBSODIUM));
  d.handshake();
  auto& ws = d.io.waitScope;
  unsigned seed = 100;
  for (size_t n : {size_t{1}, SecureStream::kMaxRecord + 1, size_t{5} << 20}) {
    auto data = pattern(n, ++seed);
    // In uneven pieces, as a Cap'n Proto message's segments: OpenSSL seals each part of
    // a record as it goes.
    kj::Vector<kj::ArrayPtr<const kj::byte>> pieces;
    for (size_t at = 0, cut = 1; at < n; at += cut, cut = cut * 7 + 3) pieces.add(data.slice(at, kj::min(n, at + cut)));
    auto sending = d.a->write(pieces.asPtr());
    CHECK(readAll(*d.b, ws, n, 1 << 20) == data);
    sending.wait(ws);
    replyArrives(d, n, ++seed, 100000);
  }
}

// The cipher both ends offer (AES-256-GCM, the hello's offer bit) or, when one end is
// of an earlier build (no offer) or seals with libsodium, ChaCha20-Poly1305; data goes
// both ways in each case. The tests of what the wire refuses run OpenSSL pairs, which
// use AES-256-GCM here, and libsodium pairs, which use ChaCha20-Poly1305.
TEST_CASE("secure stream: AES-256-GCM when both ends offer it, else ChaCha20-Poly1305, and both link") {
  REQUIRE(aesGcmFast());  // this CPU has AES-NI (the test VM's EPYC does)
  auto earlier = []() {  // a peer of an earlier build: its hello offers nothing
    auto s = secret('k', LinkMode::ENCRYPTED, CipherCode::OPENSSL);
    s.offerAesGcm = false;
    return s;
  };
  struct Pair {
    LinkSecret a, b;
    Algorithm expected;
  } pairs[] = {
      {secret('k', LinkMode::ENCRYPTED, CipherCode::OPENSSL), secret('k', LinkMode::ENCRYPTED, CipherCode::OPENSSL),
       Algorithm::AES256_GCM},
      {secret('k'), earlier(), Algorithm::CHACHA20_POLY1305},
      {earlier(), secret('k'), Algorithm::CHACHA20_POLY1305},
      {secret('k', LinkMode::ENCRYPTED, CipherCode::LIBSODIUM), secret('k'), Algorithm::CHACHA20_POLY1305},
  };
  unsigned seed = 300;
  for (auto& pair : pairs) {
    CAPTURE(seed);
    Direct d(pair.a, pair.b);
    d.handshake();
    auto& ws = d.io.waitScope;
    CHECK(d.a->algorithm() == pair.expected);
    CHECK(d.b->algorithm() == pair.expected);
    for (size_t n : {size_t{1}, size_t{3} * SecureStream::kMaxRecord + 5}) {
      auto data = pattern(n, ++seed);
      auto sending = d.a->write(data.begin(), data.size());
      CHECK(readAll(*d.b, ws, n, 1 << 20) == data);
      sending.wait(ws);
      replyArrives(d, n, ++seed, 1000);
    }
  }
}

// An AES-256-GCM record is the same layout as a ChaCha20-Poly1305 one (length as
// associated data, nonce = 4 zero bytes and the record's number, little endian): checked
// against libsodium's own AES-256-GCM, another implementation.
TEST_CASE("secure stream: an AES-256-GCM record is length | ciphertext | tag with the record number as nonce") {
  REQUIRE(aesGcmFast());
  REQUIRE(crypto_aead_aes256gcm_is_available());
  kj::byte key[32];
  for (int i = 0; i < 32; ++i) key[i] = static_cast<kj::byte>(i * 3);
  kj::StringPtr text = "a record of the mig-link wire format, sealed with AES-256-GCM";
  auto record = kj::heapArray<kj::byte>(SecureStream::recordSize(text.size()));
  record[0] = static_cast<kj::byte>(text.size());
  record[1] = record[2] = record[3] = 0;
  memcpy(record.begin() + 4, text.begin(), text.size());
  uint64_t counter = 0x0102030405;
  SecureStream::sealRecord(key, counter, record.begin(), text.size(), CipherCode::OPENSSL, Algorithm::AES256_GCM);

  kj::byte nonce[12] = {0, 0, 0, 0, 5, 4, 3, 2, 1, 0, 0, 0};
  auto expected = kj::heapArray<kj::byte>(record.size());
  memcpy(expected.begin(), record.begin(), 4);
  crypto_aead_aes256gcm_encrypt_detached(expected.begin() + 4, expected.begin() + 4 + text.size(), nullptr,
                                         reinterpret_cast<const kj::byte*>(text.begin()), text.size(),
                                         record.begin(), 4, nullptr, nonce, key);
  CHECK(hex(record) == hex(expected));
  // And not the ChaCha20-Poly1305 record of the same key and number.
  auto chacha = kj::heapArray<kj::byte>(record.size());
  memcpy(chacha.begin(), expected.begin(), 4);
  memcpy(chacha.begin() + 4, text.begin(), text.size());
  SecureStream::sealRecord(key, counter, chacha.begin(), text.size(), CipherCode::OPENSSL);
  CHECK(hex(chacha) != hex(record));
}

// The offer is in the hellos both ends hash: flipped on the way (a downgrade, say), the
// two ends derive different keys and neither takes the other's `finished`.
TEST_CASE("secure stream: an offer bit flipped on the wire fails the handshake") {
  REQUIRE(aesGcmFast());
  for (bool fromConnector : {true, false}) {
    CAPTURE(fromConnector);
    kj::AsyncIoContext io = kj::setupAsyncIo();
    auto left = io.provider->newTwoWayPipe();
    auto right = io.provider->newTwoWayPipe();
    auto s = secret('k', LinkMode::ENCRYPTED, CipherCode::OPENSSL);
    SecureStream a(kj::mv(left.ends[0]), SecureStream::Side::CONNECTOR, s);
    SecureStream b(kj::mv(right.ends[1]), SecureStream::Side::ACCEPTOR, s);
    auto& aWire = *left.ends[1];
    auto& bWire = *right.ends[0];
    auto ha = a.handshake();
    auto hb = b.handshake();
    kj::byte hello[2][kHelloWire];
    aWire.read(hello[0], kHelloWire).wait(io.waitScope);
    bWire.read(hello[1], kHelloWire).wait(io.waitScope);
    CHECK((hello[0][kHelloWire - 1] & 0x80) != 0);
    CHECK((hello[1][kHelloWire - 1] & 0x80) != 0);
    hello[fromConnector ? 0 : 1][kHelloWire - 1] ^= 0x80;
    bWire.write(hello[0], kHelloWire).wait(io.waitScope);
    aWire.write(hello[1], kHelloWire).wait(io.waitScope);
    auto up = aWire.pumpTo(bWire);
    auto down = bWire.pumpTo(aWire);
    auto ea = kj::runCatchingExceptions([&]() { ha.wait(io.waitScope); });
    auto eb = kj::runCatchingExceptions([&]() { hb.wait(io.waitScope); });
    KJ_IF_MAYBE(e, ea) { CHECK(has(e->getDescription(), "does not hold this cluster's key")); }
    else {
      FAIL("the connector took a hello altered on the way");
    }
    KJ_IF_MAYBE(e, eb) { CHECK(has(e->getDescription(), "does not hold this cluster's key")); }
    else {
      FAIL("the acceptor took a hello altered on the way");
    }
  }
}

TEST_CASE("secure stream: a record split into single bytes on the wire is read whole") {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  OnPath p(io);
  auto record = p.sealed("split on the way");
  for (auto& byte : record) p.deliver(kj::arrayPtr(&byte, 1));
  CHECK(p.receive(16) == "split on the way");
}

TEST_CASE("secure stream: the wire never carries the plaintext") {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  OnPath p(io);
  kj::StringPtr marker = "MARKER-in-clear-0123456789";
  auto record = p.sealed(marker);
  CHECK(memmem(record.begin(), record.size(), marker.begin(), marker.size()) == nullptr);
  CHECK(memmem(record.begin(), record.size(), "MARKER", 6) == nullptr);
  p.deliver(record);
  CHECK(p.receive(marker.size()) == marker);
}

TEST_CASE("secure stream: a peer with another cluster key is refused, both sides say so") {
  Direct d(secret('k'), secret('x'));
  auto ha = d.a->handshake();
  auto hb = d.b->handshake();
  auto eb = kj::runCatchingExceptions([&]() { hb.wait(d.io.waitScope); });
  auto ea = kj::runCatchingExceptions([&]() { ha.wait(d.io.waitScope); });
  KJ_IF_MAYBE(e, eb) {
    CHECK(e->getType() == kj::Exception::Type::DISCONNECTED);
    CHECK(has(e->getDescription(), "does not hold this cluster's key"));
  } else {
    FAIL("the acceptor took a peer with another key");
  }
  KJ_IF_MAYBE(e, ea) { CHECK(has(e->getDescription(), "does not hold this cluster's key")); }
  else {
    FAIL("the connector took a peer with another key");
  }
}

TEST_CASE("secure stream: a peer that is not a shadowd, or wants the other mode, is refused") {
  {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    auto pipe = io.provider->newTwoWayPipe();
    SecureStream s(kj::mv(pipe.ends[0]), SecureStream::Side::ACCEPTOR, secret('k'));
    auto h = s.handshake();
    kj::byte junk[kHelloWire];
    memset(junk, 'G', sizeof(junk));  // "GGGG…": someone's HTTP client, say
    pipe.ends[1]->write(junk, sizeof(junk)).wait(io.waitScope);
    auto e = kj::runCatchingExceptions([&]() { h.wait(io.waitScope); });
    KJ_IF_MAYBE(ex, e) { CHECK(has(ex->getDescription(), "does not speak mig's link protocol")); }
    else {
      FAIL("junk accepted as a hello");
    }
  }
  Direct d(secret('k', LinkMode::PLAINTEXT), secret('k', LinkMode::ENCRYPTED));
  auto ha = d.a->handshake();
  auto e = kj::runCatchingExceptions([&]() { d.b->handshake().wait(d.io.waitScope); });
  KJ_IF_MAYBE(ex, e) { CHECK(has(ex->getDescription(), "insecure-plaintext-links")); }
  else {
    FAIL("an encrypting acceptor took a plaintext peer");
  }
  CHECK(kj::runCatchingExceptions([&]() { ha.wait(d.io.waitScope); }) != nullptr);
}

TEST_CASE("secure stream: a host without a cluster key cannot open a link") {
  LinkSecret none;
  kj::AsyncIoContext io = kj::setupAsyncIo();
  auto pipe = io.provider->newTwoWayPipe();
  SecureStream s(kj::mv(pipe.ends[0]), SecureStream::Side::CONNECTOR, none);
  auto e = kj::runCatchingExceptions([&]() { s.handshake().wait(io.waitScope); });
  KJ_IF_MAYBE(ex, e) { CHECK(has(ex->getDescription(), "no cluster key")); }
  else {
    FAIL("a keyless link opened");
  }
}

void checkRefused(OnPath& p) {
  char buf[64];
  auto e = kj::runCatchingExceptions([&]() { p.b->tryRead(buf, 1, sizeof(buf)).wait(p.io.waitScope); });
  KJ_IF_MAYBE(ex, e) {
    CHECK(ex->getType() == kj::Exception::Type::DISCONNECTED);
    CHECK(has(ex->getDescription(), "connection closed"));
  } else {
    FAIL("an altered stream was delivered");
  }
}

TEST_CASE("secure stream: a flipped bit anywhere in a record is refused") {
  // Each position: the length, the body, the tag.
  size_t positions[] = {0, 3, 4, 10, 20, 21, 36};
  kj::AsyncIoContext io = kj::setupAsyncIo();
  for (auto cipher : kCiphers) {
    for (size_t at : positions) {
      OnPath p(io, cipher);
      auto record = p.sealed("forwarded write: 0123");  // 21 bytes
      REQUIRE(at < record.size());
      record[at] ^= 0x01;
      p.deliver(record);
      CAPTURE(name(cipher));
      CAPTURE(at);
      checkRefused(p);
    }
  }
}

TEST_CASE("secure stream: a replayed record is refused, after the original was delivered") {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  for (auto cipher : kCiphers) {
    CAPTURE(name(cipher));
    OnPath p(io, cipher);
    auto first = p.sealed("pay 100");
    p.deliver(first);
    CHECK(p.receive(7) == "pay 100");
    p.deliver(first);
    checkRefused(p);
  }
}

TEST_CASE("secure stream: reordered or dropped records are refused") {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  for (auto cipher : kCiphers) {
    CAPTURE(name(cipher));
    {
      OnPath p(io, cipher);
      auto one = p.sealed("one");
      auto two = p.sealed("two");
      p.deliver(two);
      p.deliver(one);
      checkRefused(p);
    }
    {
      OnPath p(io, cipher);
      p.sealed("dropped");
      auto next = p.sealed("after");
      p.deliver(next);
      checkRefused(p);
    }
  }
}

TEST_CASE("secure stream: a record from another connection with the same key is refused") {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  for (auto cipher : kCiphers) {
    CAPTURE(name(cipher));
    OnPath first(io, cipher);
    auto record = first.sealed("from the first link");
    OnPath second(io, cipher);
    second.deliver(record);
    checkRefused(second);
  }
}

TEST_CASE("secure stream: plaintext mode (benchmarks only) passes bytes in clear after the hellos") {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  auto pipe = io.provider->newTwoWayPipe();
  auto s = secret('k', LinkMode::PLAINTEXT);
  SecureStream a(kj::mv(pipe.ends[0]), SecureStream::Side::CONNECTOR, s);
  auto h = a.handshake();
  // The peer's hello, taken from another plaintext stream's wire.
  auto other = io.provider->newTwoWayPipe();
  SecureStream b(kj::mv(other.ends[0]), SecureStream::Side::ACCEPTOR, s);
  auto hb = b.handshake();
  kj::byte hello[kHelloWire];
  other.ends[1]->read(hello, sizeof(hello)).wait(io.waitScope);
  pipe.ends[1]->write(hello, sizeof(hello)).wait(io.waitScope);
  h.wait(io.waitScope);
  kj::byte theirs[kHelloWire];
  pipe.ends[1]->read(theirs, sizeof(theirs)).wait(io.waitScope);
  a.write("in clear", 8).wait(io.waitScope);
  char wire[8];
  pipe.ends[1]->read(wire, 8).wait(io.waitScope);
  CHECK(memcmp(wire, "in clear", 8) == 0);
}

TEST_CASE("secure stream: over the pre-login limit, a peer with the key still gets no more than the limit through") {
  // As shadowd accepts: the link stream over the pre-login stream (rpc_server.cc).
  kj::AsyncIoContext io = kj::setupAsyncIo();
  auto pipe = io.provider->newTwoWayPipe();
  auto capped = kj::heap<PreLoginStream>(kj::mv(pipe.ends[1]), 4096);
  auto& limit = *capped;
  auto over = limit.whenOverLimit().fork();
  SecureStream a(kj::mv(pipe.ends[0]), SecureStream::Side::CONNECTOR, secret('k'));
  SecureStream b(kj::mv(capped), SecureStream::Side::ACCEPTOR, secret('k'));
  auto ha = a.handshake();
  b.handshake().wait(io.waitScope);  // ~100 bytes: well under the limit
  ha.wait(io.waitScope);
  auto big = pattern(20000, 3);
  auto sending = a.write(big.begin(), big.size());
  kj::byte in[20000];
  size_t got = 0;
  auto e = kj::runCatchingExceptions([&]() {
    for (size_t n = 1; n > 0; got += n) n = b.tryRead(in + got, 1, sizeof(in) - got).wait(io.waitScope);
  });
  CHECK(e != nullptr);
  CHECK(got < 4096);
  CHECK(limit.bytesRead() == 4096);
  CHECK(over.addBranch().poll(io.waitScope));
}

}  // namespace
}  // namespace mig::shadow
