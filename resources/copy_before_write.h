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

}  // namespace mig::resources
