// Validation of a restore plan, written to run inside the freestanding restorer
// (no libc, no allocation, no exceptions): every offset, count and range is
// checked before the restorer acts on it, so a corrupt plan is refused instead
// of scribbling over the address space it is rebuilding.
#pragma once

#include "image/restore_plan.h"

namespace mig::plan {

namespace detail {

// a + b <= limit, without overflow.
inline bool fits(uint64_t a, uint64_t b, uint64_t limit) { return a <= limit && b <= limit - a; }

inline bool arrayFits(uint64_t offset, uint64_t count, uint64_t elemSize, uint64_t total) {
  if (offset % 8 != 0) return false;
  if (count > total / elemSize) return false;
  return fits(offset, count * elemSize, total);
}

inline bool stringOk(const Header* h, uint32_t offset) {
  if (offset == kNoString) return true;
  if (offset >= h->stringsSize) return false;
  const char* s = string(h, offset);
  for (uint64_t i = offset; i < h->stringsSize; ++i, ++s) {
    if (*s == '\0') return true;
  }
  return false;
}

inline constexpr uint64_t kUserLimit = 1ull << 47;

}  // namespace detail

// Returns nullptr if the plan of `size` bytes at `p` (8-byte aligned) is well
// formed, else a static message saying what is wrong.
inline const char* validate(const void* p, uint64_t size) {
  using namespace detail;
  if (size < sizeof(Header)) return "plan shorter than its header";
  const Header* h = static_cast<const Header*>(p);
  if (h->magic != kMagic) return "plan has a wrong magic number";
  if (h->version != kVersion) return "plan version not supported";
  if (h->headerSize != sizeof(Header)) return "plan header size mismatch";
  if (h->totalSize != size) return "plan size mismatch";
  if (!arrayFits(h->regions, h->regionCount, sizeof(Region), size)) return "plan regions out of bounds";
  if (!arrayFits(h->pages, h->pagesCount, sizeof(Pages), size)) return "plan pages out of bounds";
  if (!arrayFits(h->threads, h->threadCount, sizeof(Thread), size)) return "plan threads out of bounds";
  if (h->sigactionCount > 64 || !arrayFits(h->sigactions, h->sigactionCount, sizeof(SigAction), size)) {
    return "plan sigactions out of bounds";
  }
  if (!arrayFits(h->fds, h->fdCount, sizeof(Fd), size)) return "plan fds out of bounds";
  if (h->pendingCount > 4096 || !arrayFits(h->pendingSignals, h->pendingCount, sizeof(PendingSignal), size)) {
    return "plan pending signals out of bounds";
  }
  if (h->timerCount > 4096 || !arrayFits(h->timers, h->timerCount, sizeof(PosixTimer), size)) {
    return "plan POSIX timers out of bounds";
  }
  if (!fits(h->strings, h->stringsSize, size)) return "plan strings out of bounds";
  if (!fits(h->blob, h->blobSize, size)) return "plan blob out of bounds";
  if (h->imagePath == kNoString || !stringOk(h, h->imagePath)) return "plan names no image file";
  if (h->threadCount == 0) return "plan has no threads";

  const Region* r = regions(h);
  uint64_t prevEnd = 0;
  for (uint32_t i = 0; i < h->regionCount; ++i) {
    if (r[i].start % kPage || r[i].end % kPage) return "plan region not page aligned";
    if (r[i].start >= r[i].end || r[i].end > kUserLimit) return "plan region empty or out of range";
    if (r[i].start < prevEnd) return "plan regions overlap or are unsorted";
    if (r[i].prot > 7) return "plan region has bad protection";
    if (r[i].source > kSourceSysvShm || r[i].kind > kKindMemfd) return "plan region has a bad source or kind";
    if (!stringOk(h, r[i].path)) return "plan region path out of bounds";
    if (r[i].source == kSourceFile && (r[i].path == kNoString || r[i].fileOffset % kPage)) {
      return "plan file region without a file or with an unaligned offset";
    }
    if (r[i].source == kSourceSysvShm && ((r[i].mapFlags & 1) == 0 || r[i].fileOffset > kShmRemoveAfter)) {
      return "plan System V segment region not shared or with bad flags";
    }
    prevEnd = r[i].end;
  }

  const Pages* pg = pages(h);
  for (uint32_t i = 0; i < h->pagesCount; ++i) {
    if (pg[i].region >= h->regionCount) return "plan pages name a missing region";
    const Region& owner = r[pg[i].region];
    // Copied bytes (a sparse pages section's extents) may start and end anywhere; what
    // is served lazily is whole pages.
    if (pg[i].len == 0 ||
        (pg[i].method == kPagesLazy && (pg[i].addr % kPage || pg[i].len % kPage || pg[i].imageOffset % kPage))) {
      return "plan pages not page aligned";
    }
    if (pg[i].addr < owner.start || pg[i].len > owner.end - pg[i].addr || pg[i].addr >= owner.end) {
      return "plan pages outside their region";
    }
    if (pg[i].method != kPagesCopy && pg[i].method != kPagesLazy) return "plan pages have a bad method";
    if (pg[i].method == kPagesLazy && (h->lazySocket <= 0 || owner.source != kSourceZero || (owner.mapFlags & 0x01 /* MAP_SHARED */))) {
      return "plan lazy pages outside a private anonymous region, or without a page server";
    }
  }

  const Thread* t = threads(h);
  uint32_t mains = 0;
  for (uint32_t i = 0; i < h->threadCount; ++i) {
    if (t[i].vtid <= 0) return "plan thread has a bad id";
    if (!fits(t[i].sigframe, t[i].sigframeLen, h->blobSize)) return "plan thread frame out of bounds";
    if (t[i].flags & kThreadMain) ++mains;
  }
  if (mains != 1) return "plan must have exactly one main thread";
  const Fd* fd = fds(h);
  for (uint32_t i = 0; i < h->fdCount; ++i) {
    if (fd[i].fd < 0) return "plan fd is negative";
  }
  const PendingSignal* ps = pendingSignals(h);
  for (uint32_t i = 0; i < h->pendingCount; ++i) {
    int32_t signo;
    __builtin_memcpy(&signo, ps[i].info, sizeof(signo));
    if (signo < 1 || signo > 64) return "plan pending signal has a bad number";
    if (ps[i].thread != kProcessWide && (ps[i].thread < 0 || static_cast<uint32_t>(ps[i].thread) >= h->threadCount)) {
      return "plan pending signal names a missing thread";
    }
  }
  if (h->itimerValueNs < 0 || h->itimerIntervalNs < 0) return "plan timer is negative";
  const PosixTimer* pt = posixTimers(h);
  for (uint32_t i = 0; i < h->timerCount; ++i) {
    if (pt[i].id < 0 || pt[i].valueNs < 0 || pt[i].intervalNs < 0 || pt[i].absoluteNs < 0) {
      return "plan POSIX timer has a negative id or time";
    }
    if (pt[i].signo < 0 || pt[i].signo > 64) return "plan POSIX timer has a bad signal";
    if ((pt[i].notify & kSigevThreadId) && (pt[i].thread < 0 || static_cast<uint32_t>(pt[i].thread) >= h->threadCount)) {
      return "plan POSIX timer names a missing thread";
    }
  }
  if (h->resumeInfoAddr != 0) {
    if (h->resumeInfoAddr % 8 != 0) return "plan resume info is unaligned";
    bool inside = false;
    for (uint32_t i = 0; i < h->regionCount; ++i) {
      inside = inside || (h->resumeInfoAddr >= r[i].start && r[i].end - h->resumeInfoAddr >= sizeof(ResumeInfo) &&
                          (r[i].prot & 2) != 0);
    }
    if (!inside) return "plan resume info is not in writable memory";
  }
  if (h->resumeEntry != 0) {
    bool code = false;
    for (uint32_t i = 0; i < h->regionCount; ++i) {
      code = code || (h->resumeEntry >= r[i].start && h->resumeEntry < r[i].end && (r[i].prot & 4) != 0);
    }
    if (!code) return "plan resume entry is not in executable memory";
  }
  if (h->configFd < -1) return "plan config fd is negative";
  if ((h->flags & kPlanHasMmLayout) && !fits(h->mm.auxv, h->mm.auxvLen, h->blobSize)) {
    return "plan auxv out of bounds";
  }
  return nullptr;
}

}  // namespace mig::plan
