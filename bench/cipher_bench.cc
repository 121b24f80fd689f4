// What a link's record cipher costs a side: GB/s sealing and opening 64 KiB records on
// one core (shadow/record_cipher.h), for each library the links can use and for
// libsodium's AES-256-GCM, the candidate this CPU's AES-NI suggested. The baseline is
// libsodium's ChaCha20-Poly1305 (what links used before), measured in the same run;
// every figure is CPU time (the process's own), so load on other cores matters less.
// usage: cipher_bench [MIB_PER_ROUND] [ROUNDS]   (defaults 1024, 3)
#include "shadow/record_cipher.h"

#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

using mig::shadow::CipherCode;
using mig::shadow::RecordKey;

namespace {

constexpr size_t kRecord = 64 * 1024;

double cpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

struct Figure {
  double seal, open;  // GB/s
};

// Seals `records` records into one buffer, then opens them, checking every tag.
template <typename Seal, typename Open>
Figure measure(size_t records, Seal seal, Open open) {
  std::vector<unsigned char> body(kRecord, 0x5a), out(kRecord);
  std::vector<unsigned char> tags(records * 16);
  unsigned char aad[4] = {0, 0, 1, 0};
  double t0 = cpuSeconds();
  // Each record is sealed from the same plaintext, as the bench only times the cipher;
  // the first record's ciphertext is kept to open.
  std::vector<unsigned char> sealed(kRecord);
  for (size_t i = 0; i < records; ++i) {
    memcpy(sealed.data(), body.data(), kRecord);
    seal(i, aad, sealed.data(), &tags[i * 16]);
  }
  double t1 = cpuSeconds();
  // Reopen the last sealed record many times with its number.
  double t2 = cpuSeconds();
  for (size_t i = 0; i < records; ++i) {
    if (!open(records - 1, aad, sealed.data(), &tags[(records - 1) * 16], out.data())) {
      fprintf(stderr, "cipher_bench: a record failed to open\n");
      exit(1);
    }
  }
  double t3 = cpuSeconds();
  if (memcmp(out.data(), body.data(), kRecord) != 0) {
    fprintf(stderr, "cipher_bench: a record opened to other bytes\n");
    exit(1);
  }
  double bytes = static_cast<double>(records * kRecord);
  return {bytes / (t1 - t0) / 1e9, bytes / (t3 - t2) / 1e9};
}

Figure recordKey(size_t records, CipherCode code) {
  unsigned char key[32];
  randombytes_buf(key, sizeof(key));
  RecordKey s(key, code), o(key, code);
  return measure(
      records, [&](uint64_t n, const unsigned char* aad, unsigned char* b, unsigned char* tag) { s.seal(n, aad, 4, b, kRecord, tag); },
      [&](uint64_t n, const unsigned char* aad, const unsigned char* b, const unsigned char* tag, unsigned char* out) {
        return o.open(n, aad, 4, b, kRecord, tag, out);
      });
}

Figure sodiumAes(size_t records) {
  unsigned char key[32];
  randombytes_buf(key, sizeof(key));
  crypto_aead_aes256gcm_state st;
  crypto_aead_aes256gcm_beforenm(&st, key);
  auto nonce = [](uint64_t n, unsigned char out[12]) {
    memset(out, 0, 12);
    memcpy(out + 4, &n, 8);
  };
  return measure(
      records,
      [&](uint64_t n, const unsigned char* aad, unsigned char* b, unsigned char* tag) {
        unsigned char iv[12];
        nonce(n, iv);
        crypto_aead_aes256gcm_encrypt_detached_afternm(b, tag, nullptr, b, kRecord, aad, 4, nullptr, iv, &st);
      },
      [&](uint64_t n, const unsigned char* aad, const unsigned char* b, const unsigned char* tag, unsigned char* out) {
        unsigned char iv[12];
        nonce(n, iv);
        return crypto_aead_aes256gcm_decrypt_detached_afternm(out, nullptr, b, kRecord, tag, aad, 4, iv, &st) == 0;
      });
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (sodium_init() < 0) return 1;
  size_t mib = argc > 1 ? strtoul(argv[1], nullptr, 10) : 1024;
  int rounds = argc > 2 ? atoi(argv[2]) : 3;
  size_t records = mib * 1024 * 1024 / kRecord;
  bool aes = crypto_aead_aes256gcm_is_available() != 0;
  bool openssl = mig::shadow::opensslAvailable();
  const char* names[] = {"libsodium ChaCha20-Poly1305 (baseline)", "OpenSSL ChaCha20-Poly1305 (links now)",
                         "libsodium AES-256-GCM (not used)"};
  std::vector<double> seal[3], open[3];
  for (int r = 0; r < rounds; ++r) {
    Figure f[3] = {recordKey(records, CipherCode::LIBSODIUM), openssl ? recordKey(records, CipherCode::OPENSSL) : Figure{},
                   aes ? sodiumAes(records) : Figure{}};
    for (int i = 0; i < 3; ++i) {
      seal[i].push_back(f[i].seal);
      open[i].push_back(f[i].open);
    }
  }
  printf("64 KiB records, %zu MiB a round, median of %d round(s), GB/s of CPU time on one core:\n", mib, rounds);
  printf("  %-42s %8s %8s %8s\n", "", "seal", "open", "x base");
  for (int i = 0; i < 3; ++i) {
    if ((i == 1 && !openssl) || (i == 2 && !aes)) {
      printf("  %-42s (not available here)\n", names[i]);
      continue;
    }
    double s = median(seal[i]), o = median(open[i]);
    printf("  %-42s %8.2f %8.2f %8.2f\n", names[i], s, o, (s + o) / (median(seal[0]) + median(open[0])));
  }
}
