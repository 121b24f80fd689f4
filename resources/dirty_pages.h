// Which pages of a running job were written since the last look, without soft-dirty
// bits (kernels built without them) and without privilege: the job's own
// userfaultfd in asynchronous write-protect mode (UFFD_FEATURE_WP_ASYNC), whose
// write faults the kernel resolves itself by clearing the page's protection (the job
// never stops, and a write by the kernel - read() into a protected buffer - does not
// fail), and the PAGEMAP_SCAN ioctl on /proc/PID/pagemap, which in one pass reports
// the pages that lost their protection (PAGE_IS_WRITTEN) and protects them again.
//
// The userfaultfd must be made inside the job (it binds to the mm of the process
// that creates it): the shim makes it on request (shim/write_tracking.cc) and hands
// it over with SCM_RIGHTS. Registration and scans then work from outside: both act
// on the mm the userfaultfd and the pagemap file belong to. When the tracker closes
// its descriptor, the kernel unregisters every range: nothing stays behind in the job.
//
// Fork: the userfaultfd has no UFFD_FEATURE_EVENT_FORK, so the kernel gives a child
// none of the parent's registration and clears the protection bits in its copy of
// the page tables: the child runs untracked and unaffected.
#pragma once

#include "resources/page_source.h"

#include <kj/array.h>
#include <kj/function.h>
#include <kj/vector.h>

#include <cstdint>
#include <map>
#include <sys/types.h>

namespace mig::resources {

// A set of pages as sorted, non-overlapping, non-adjacent [start, end) ranges of
// addresses (page-aligned).
class PageRangeSet {
 public:
  void add(uint64_t start, uint64_t end);
  void remove(uint64_t start, uint64_t end);
  // Splits [start, end) into the runs inside the set (`in`) and outside it (`out`),
  // appended in address order; either may be null.
  void split(uint64_t start, uint64_t end, kj::Vector<PageSpan>* in, kj::Vector<PageSpan>* out) const;
  uint64_t pages() const;
  bool empty() const { return ranges_.empty(); }
  void clear() { ranges_.clear(); }
  const std::map<uint64_t, uint64_t>& ranges() const { return ranges_; }  // start -> end

 private:
  std::map<uint64_t, uint64_t> ranges_;  // start -> end
};

// The PAGEMAP_SCAN ABI (linux/fs.h since 6.7; Debian 12's headers predate it).
namespace pagemap_scan {
struct PageRegion {
  uint64_t start, end, categories;
};
struct Arg {
  uint64_t size, flags, start, end, walkEnd, vec, vecLen, maxPages, categoryInverted, categoryMask,
      categoryAnyofMask, returnMask;
};
inline constexpr unsigned long kIoctl = (3ul << 30) | (sizeof(Arg) << 16) | ('f' << 8) | 16;  // _IOWR('f', 16, Arg)
inline constexpr uint64_t kIsWritten = 1u << 1;
inline constexpr uint64_t kWpMatching = 1u << 0;
inline constexpr uint64_t kCheckWpAsync = 1u << 1;
inline constexpr uint64_t kIsFile = 1u << 2;     // PAGE_IS_FILE
inline constexpr uint64_t kIsPresent = 1u << 3;  // PAGE_IS_PRESENT
inline constexpr uint64_t kIsSwapped = 1u << 4;  // PAGE_IS_SWAPPED
inline constexpr uint64_t kIsPfnZero = 1u << 5;  // PAGE_IS_PFNZERO: the shared zero page
inline constexpr uint64_t kIsHuge = 1u << 6;     // PAGE_IS_HUGE
}  // namespace pagemap_scan

// One PAGEMAP_SCAN walk by the kernel of [start, end) on `pagemap` (/proc/PID/pagemap)
// with `a`'s category and return masks (its range and buffer are set here): `each` for
// every run of pages it reports. False where the kernel has no PAGEMAP_SCAN (before 6.7)
// or does not know a category asked for.
bool scanPages(int pagemap, uint64_t start, uint64_t end, pagemap_scan::Arg a,
               kj::FunctionParam<void(const pagemap_scan::PageRegion&)> each);

// The present or swapped-out pages of [start, end), what ProcPageSource saves of
// private anonymous memory, appended to `out` as runs, from one PAGEMAP_SCAN walk by the
// kernel on `pagemap` (/proc/PID/pagemap): runs, not a page map entry per page, so a
// freeze is shorter. False where the kernel has no PAGEMAP_SCAN (before 6.7), `out` as
// it was: the caller asks its page source instead.
// `privateFile`: [start, end) is a private file mapping, whose pages are saved only
// where they are private copies (or swapped), not the file's own.
bool scanPresent(int pagemap, uint64_t start, uint64_t end, kj::Vector<PageSpan>& out, bool privateFile = false);

inline constexpr uint64_t kUffdFeatureWpUnpopulated = 1ull << 13;
inline constexpr uint64_t kUffdFeatureWpAsync = 1ull << 15;

class DirtyPageTracker {
 public:
  // Takes ownership of `uffd`, a userfaultfd made by process `pid` with
  // UFFD_FEATURE_WP_ASYNC enabled.
  DirtyPageTracker(pid_t pid, int uffd);
  ~DirtyPageTracker() noexcept(false);
  DirtyPageTracker(const DirtyPageTracker&) = delete;
  DirtyPageTracker& operator=(const DirtyPageTracker&) = delete;

  // Adds to `written` the pages of `regions` written since the previous call (and
  // protects them again). A region the tracker does not cover yet (the first call,
  // a region mapped, grown or remapped since) is registered and counts as written
  // whole. Regions that cannot be tracked (shared memory, [vdso]…) are left out of
  // `written` and listed in `untracked`: their pages are to be sent while frozen.
  void collect(kj::ArrayPtr<const MappedRegion> regions, PageRangeSet& written, PageRangeSet& untracked);

  uint64_t scans() const { return scans_; }

 private:
  // Scans [start, end), adding written pages; false when part of it is not
  // registered with our userfaultfd (the scan stops there).
  bool scan(uint64_t start, uint64_t end, PageRangeSet& written);
  bool registerRange(uint64_t start, uint64_t end);

  pid_t pid_;
  int uffd_;
  int pagemap_;
  uint64_t scans_ = 0;
  kj::Array<pagemap_scan::PageRegion> vec_;
};

// Whether the tracker can follow this region: private memory the capture saves.
bool trackable(const MappedRegion& r);

// The part [start, end) of `r`, to ask a page source about only that part.
MappedRegion partOf(const MappedRegion& r, uint64_t start, uint64_t end);

}  // namespace mig::resources
