// The byte comparisons behind a shared writable mapping of a home file kept as a local
// copy (shared_file_mapping.h): which bytes the job changed since the copy last agreed
// with home (its twin), and which bytes home changed since then. Pure functions over
// three buffers, so they are unit-tested apart (page_diff_test.cc) and usable from the
// SIGSYS handler (no allocation, no system call).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mig::forward {

// A run of bytes [begin, end) of the mapping.
struct ByteRun {
  size_t begin;
  size_t end;
};

// Calls f(ByteRun) for each maximal run of bytes where `now` differs from `was`, from
// the highest address down. Exact runs, never widened over equal bytes: a byte the job
// did not write may be another process's at home (sqlite's read marks sit four bytes
// from the header a writer changes), and writing our old copy of it back would undo
// theirs. Highest first because writers that share memory publish a header at the
// start last (sqlite writes its hash tables, then the index header at offset 0), and a
// reader at home must not see the header before what it describes.
template <typename F>
void forEachChangedRunDescending(const uint8_t* now, const uint8_t* was, size_t n, F&& f) {
  size_t i = n;
  while (i > 0) {
    if (now[i - 1] == was[i - 1]) {
      uint64_t x, y;  // equal bytes are skipped a word at a time where aligned
      if (i % 8 == 0 && i >= 8 &&
          (__builtin_memcpy(&x, now + i - 8, 8), __builtin_memcpy(&y, was + i - 8, 8), x == y)) {
        i -= 8;
      } else {
        --i;
      }
      continue;
    }
    const size_t end = i;
    while (i > 0 && now[i - 1] != was[i - 1]) --i;
    f(ByteRun{i, end});
  }
}

// Takes home's changes into the copy: for every byte where `home` differs from `twin`
// (home changed it since the copy last agreed), `local` gets home's byte unless the job
// changed that byte itself since (local != twin: its own write, not yet written back,
// wins, as the later store would on one host); `twin` becomes `home` everywhere.
// Returns how many bytes of `local` changed. Bytes home did not change are never
// stored to, so a store another thread of the job makes meanwhile is not lost.
inline size_t takeHomeChanges(uint8_t* local, uint8_t* twin, const uint8_t* home, size_t n) {
  size_t changed = 0;
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t h, t;
      __builtin_memcpy(&h, home + i, 8);
      __builtin_memcpy(&t, twin + i, 8);
      if (h == t) {
        i += 8;
        continue;
      }
    }
    const size_t stop = i + 8 <= n ? i + 8 : n;
    for (; i < stop; ++i) {
      if (home[i] == twin[i]) continue;
      if (__atomic_load_n(local + i, __ATOMIC_RELAXED) == twin[i]) {
        __atomic_store_n(local + i, home[i], __ATOMIC_RELAXED);
        ++changed;
      }
      twin[i] = home[i];
    }
  }
  return changed;
}

}  // namespace mig::forward
