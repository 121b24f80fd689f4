// Concurrent checkpoint: the job is frozen only to take its memory map, decide which
// pages the image carries and write-protect them; then it runs while the image is
// written, and a page it is about to write for the first time is copied first
// (copy-before-write), so the image holds the memory of the freeze instant, the same
// as a stop-the-world one.
//
// Protection is a userfaultfd made inside the job (shim/write_tracking.h,
// makeCopyOnWriteUffd) in synchronous write-protect mode: a write to a protected page,
// by the job or by the kernel on its behalf (read() into a protected buffer), waits
// until our fault thread has copied the page and lifted the protection. The writer
// reads a page that nobody wrote straight from the job (still protected, so still as
// it was) and lifts the protection behind it.
//
// What cannot be protected this way (shared memory, which other processes write too;
// private file mappings, which the kernel only protects asynchronously) is copied
// while the job is frozen. Memory the job gives back before its pages were written
// out (munmap, madvise(MADV_DONTNEED), mremap, exec, exit) cannot be copied any more:
// the events say so, lost() is then true and the image must not be used.
#pragma once

#include "resources/dirty_pages.h"
#include "resources/page_source.h"

#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace mig::resources {

struct CopyBeforeWriteStats {
  uint64_t protectedPages = 0;  // write-protected at the freeze, written out while the job ran
  uint64_t frozenPages = 0;     // copied while frozen (could not be protected)
  uint64_t faultCopies = 0;     // copied before the job's first write
};

// Before the freeze, while the job runs: makes its fully present 2 MiB blocks of
// private anonymous memory huge pages (process_madvise MADV_COLLAPSE). Write-protecting
// memory in the freeze costs per page table entry, 4 KiB pages 100-170 ms per GiB on
// this VM, a huge page one entry per 2 MiB (well under 1 ms per GiB). Only blocks
// whose every page is present and not the shared zero page: the job's memory use stays
// the same. Best effort (no CAP_SYS_NICE, a kernel before 6.7, no free huge page: that
// block stays as it is). Returns the bytes made huge now.
uint64_t collapseForProtection(pid_t pid, PageSource& memory);

class CopyBeforeWrite final : public PageSource {
 public:
  // With the job frozen: takes the memory map and the pages to save from `frozen` (the
  // job's ProcPageSource), copies what cannot be protected and protects the rest with
  // `uffd` (owned from now on), and starts the fault thread. The job may then resume.
  CopyBeforeWrite(pid_t pid, int uffd, PageSource& frozen);
  ~CopyBeforeWrite() noexcept(false) override;
  CopyBeforeWrite(const CopyBeforeWrite&) = delete;
  CopyBeforeWrite& operator=(const CopyBeforeWrite&) = delete;

  // As the job was at the freeze.
  kj::Array<MappedRegion> regions() override;
  void pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) override;
  // Each saved page must be read once (writeMemory does); a page read is released.
  void read(uint64_t addr, void* buf, size_t len) override;

  // After every page was read: stops the fault thread and lets go of the job's memory
  // (closing the userfaultfd lifts what protection is left). Returns false, with the
  // reason in `why`, if a page of the freeze instant was lost (see above).
  bool finish(kj::String& why);

  const CopyBeforeWriteStats& stats() const { return stats_; }

 private:
  void faultLoop();
  void onFault(uint64_t page);
  void onGone(uint64_t start, uint64_t end, const char* how);
  void unprotect(uint64_t start, uint64_t end);
  void stopThread();

  pid_t pid_;
  int uffd_;
  int mem_ = -1;    // /proc/PID/mem of the frozen job's address space: EOF once it is gone
  int wake_ = -1;   // eventfd that stops the fault thread
  kj::Array<MappedRegion> regions_;
  std::map<uint64_t, kj::Vector<PageSpan>> spans_;  // region start -> pages to save
  PageRangeSet tracked_;  // registered with the userfaultfd (whole regions)

  std::mutex mu_;  // guards what follows: the writer and the fault thread
  PageRangeSet protected_;  // still protected and not copied: the job has not written them
  std::map<uint64_t, kj::Array<kj::byte>> copies_;  // start -> contents at the freeze
  kj::String lostWhy_;
  std::atomic<bool> lost_{false};
  kj::Vector<PageSpan> pending_;  // protection the writer could not lift yet (EAGAIN)
  std::atomic<bool> stop_{false};

  CopyBeforeWriteStats stats_;
  std::thread thread_;
};

// Pages copied into migctl's memory by address, one image's: FrozenCopy's, and before
// its freeze the rounds copied while the job runs (periodic_checkpoint.cc). A page
// copied again takes its place again; a new one the next place. The buffer is the
// caller's, reused from image to image (its pages touched once, not at every freeze).
class PageStore {
 public:
  explicit PageStore(kj::Array<kj::byte>& buffer) : buffer_(buffer) {}

  // Copies `spans` from `source`. False, with nothing copied, when the store would
  // hold more than `limitBytes` (the buffer grows up to that).
  bool copy(PageSource& source, kj::ArrayPtr<const PageSpan> spans, uint64_t limitBytes);
  // Room for `bytes` more: grown while the job runs, not in the freeze (a copy of what
  // the store holds).
  void reserve(uint64_t bytes);
  // The copy of [addr, addr + len), which must be in the store.
  void read(uint64_t addr, void* buf, size_t len) const;
  uint64_t bytes() const { return used_; }

 private:
  // Where the copy of `addr` is, and how many bytes of it follow there.
  kj::byte* at(uint64_t addr, uint64_t& run) const;

  kj::Array<kj::byte>& buffer_;
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> at_;  // span start -> (end, offset in buffer)
  PageRangeSet placed_;
  uint64_t used_ = 0;
};

// Periodic checkpoints (migctl/periodic_checkpoint.cc) track the job's writes with an
// asynchronous userfaultfd, and a range can have only one: the synchronous protection
// above is not to be had there. Instead the pages the image will carry (what
// writeMemory(..., held) saves: in an incremental image only those written since its
// parent) are copied into migctl's memory: in rounds while the job runs, then, with
// the job frozen, those written since the last round (`current`: the pages in the
// store not written since), much faster than writing them to a file and syncing it;
// the job then runs while they are written. Above `limitBytes` of such pages nothing
// is copied and read() reads the frozen job (the caller keeps it frozen until the
// image is written).
class FrozenCopy final : public PageSource {
 public:
  // With the job frozen.
  FrozenCopy(PageSource& frozen, const PageRangeSet* held, uint64_t limitBytes, PageStore& store,
             const PageRangeSet* current = nullptr);

  kj::Array<MappedRegion> regions() override;
  // What `frozen` answered for `r` (or a part of a region) at the freeze; writeMemory
  // leaves the held ones out.
  void pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) override;
  void read(uint64_t addr, void* buf, size_t len) override;

  bool copied() const { return copied_; }  // false: over the limit, the job must stay frozen
  uint64_t bytes() const { return bytes_; }  // of the pages to save
  uint64_t copiedFrozen() const { return copiedFrozen_; }  // of them, copied in the freeze

 private:
  PageSource& frozen_;
  kj::Array<MappedRegion> regions_;
  std::map<uint64_t, kj::Vector<PageSpan>> spans_;  // region start -> pages to save
  PageStore& store_;
  uint64_t bytes_ = 0;
  uint64_t copiedFrozen_ = 0;
  bool copied_ = false;
};

// readSpans of `spans` (`bytes` in all) into `buf`, in parts on several threads.
void copyInParts(PageSource& frozen, kj::ArrayPtr<const PageSpan> spans, uint64_t bytes, kj::byte* buf);

// Before the first freeze, while the job runs (nothing if `buffer` is made already):
// makes `buffer` (FrozenCopy's) as big as the job's resident memory (VmRSS, more than
// the pages an image saves: its anonymous pages and its private copies of file pages;
// at most `limitBytes`) and touches it, so that the first image, which is whole, does
// not take the buffer's page faults in its freeze.
void growFrozenCopyBuffer(pid_t pid, uint64_t limitBytes, kj::Array<kj::byte>& buffer);

// How much FrozenCopy may hold: half of MemAvailable (/proc/meminfo), so as not to push
// the machine into swap, 0 if it cannot be read; or MIG_CHAIN_COPY_LIMIT_MIB (MiB) from
// the environment (0: every image written frozen).
uint64_t frozenCopyLimit();

}  // namespace mig::resources
