// rsc/file_identity.h: whether a file at home and the file at the same path on the
// job's host are the same file, so that the job may open and map the local one (see
// rsc/open_rule.h for when it asks). A file's identity is its size and a hash
// of its whole content; inode numbers, devices and times differ between hosts that
// installed the same package, so they only key the caches: each side remembers the
// hash it computed per (device, inode, size, mtime) and hashes again only when one of
// those changed.
//
// The hash is XXH3-64 from Debian's libxxhash (the checksum of image sections too),
// inlined from its header: fast, not cryptographic. It tells apart files that differ by
// accident (another version of a library, a changed configuration); it does not defend
// against someone who crafts a colliding file on purpose, who could as well write to /usr.
//
// Header-only and async-signal-safe (no allocation, no system calls): the shim uses it
// from its SIGSYS handler, the deputy from rsc/file_identity.cc.
#pragma once

#include <cstdint>
#include <cstring>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace mig::rsc {

// What the deputy answers for a path (row FileIdentity, forward_calls.def). A plain
// struct that travels as an output struct: fixed layout, no padding.
struct FileIdentity {
  uint64_t size;     // bytes
  uint64_t hash;     // contentHash of every byte
  int64_t mtimeNs;   // modification time (informative: hosts differ)
  uint32_t regular;  // 1: a regular file (only those are compared)
  uint32_t reserved;
};
static_assert(sizeof(FileIdentity) == 32);
inline constexpr uint16_t kFileIdentitySize = sizeof(FileIdentity);

// Both sides' files are the same: regular files of one size and one content hash.
constexpr bool sameFile(const FileIdentity& home, const FileIdentity& here) {
  return home.regular == 1 && here.regular == 1 && home.size == here.size && home.hash == here.hash;
}

// The hash of n bytes at p (the whole file, mapped by the caller). XXH3's one-shot form
// uses only the stack, so it is safe in the SIGSYS handler.
inline uint64_t contentHash(const void* data, uint64_t n) { return XXH3_64bits(data, n); }

// A cache of content hashes keyed by what changes when a file is replaced or written
// (device, inode, size, mtime). Lock-free, for the SIGSYS handler's threads: a slot is
// written under an odd sequence number and read only when the sequence is even and
// unchanged around the read (a reader racing a writer just misses and hashes again).
template <uint32_t kSlots>
class HashCache {
 public:
  struct Key {
    uint64_t dev, ino, size;
    int64_t mtimeNs;
  };

  bool find(const Key& k, uint64_t& hash) const {
    const Slot& s = slots_[slotOf(k)];
    const uint64_t before = __atomic_load_n(&s.seq, __ATOMIC_ACQUIRE);
    if (before == 0 || (before & 1) != 0) return false;
    Slot copy;
    copy.dev = __atomic_load_n(&s.dev, __ATOMIC_RELAXED);
    copy.ino = __atomic_load_n(&s.ino, __ATOMIC_RELAXED);
    copy.size = __atomic_load_n(&s.size, __ATOMIC_RELAXED);
    copy.mtimeNs = __atomic_load_n(&s.mtimeNs, __ATOMIC_RELAXED);
    copy.hash = __atomic_load_n(&s.hash, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&s.seq, __ATOMIC_RELAXED) != before) return false;
    if (copy.dev != k.dev || copy.ino != k.ino || copy.size != k.size || copy.mtimeNs != k.mtimeNs) return false;
    hash = copy.hash;
    return true;
  }

  void put(const Key& k, uint64_t hash) {
    Slot& s = slots_[slotOf(k)];
    uint64_t seq = __atomic_load_n(&s.seq, __ATOMIC_RELAXED);
    if ((seq & 1) != 0 ||
        !__atomic_compare_exchange_n(&s.seq, &seq, seq + 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
      return;  // another thread is writing it: its entry is as good as ours
    }
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&s.dev, k.dev, __ATOMIC_RELAXED);
    __atomic_store_n(&s.ino, k.ino, __ATOMIC_RELAXED);
    __atomic_store_n(&s.size, k.size, __ATOMIC_RELAXED);
    __atomic_store_n(&s.mtimeNs, k.mtimeNs, __ATOMIC_RELAXED);
    __atomic_store_n(&s.hash, hash, __ATOMIC_RELAXED);
    __atomic_store_n(&s.seq, seq + 2, __ATOMIC_RELEASE);
  }

  // Forgets every entry (no thread may be using the cache).
  void clear() { memset(static_cast<void*>(slots_), 0, sizeof(slots_)); }

 private:
  struct Slot {
    uint64_t seq;  // 0: never written; odd: being written
    uint64_t dev, ino, size;
    int64_t mtimeNs;
    uint64_t hash;
  };
  static uint32_t slotOf(const Key& k) {
    const uint64_t words[2] = {k.dev, k.ino};
    return static_cast<uint32_t>(XXH3_64bits(words, sizeof words) % kSlots);
  }
  Slot slots_[kSlots] = {};
};

// The deputy's side (file_identity.cc): the function a row of mig's own names, or
// nullptr for any other name (a libc function, looked up by the dispatcher).
void* ownFunction(const char* name);

}  // namespace mig::rsc
