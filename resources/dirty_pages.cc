// See dirty_pages.h.
#include "resources/dirty_pages.h"

#include "image/image_error.h"

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace mig::resources {

using image::fail;

namespace {
constexpr uint64_t kPage = 4096;
constexpr size_t kScanVec = 1024;  // ranges per PAGEMAP_SCAN call; the scan resumes at walkEnd
}  // namespace

void PageRangeSet::add(uint64_t start, uint64_t end) {
  if (start >= end) return;
  // Merge with every range that overlaps or touches [start, end).
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= start) it = prev;
  }
  while (it != ranges_.end() && it->first <= end) {
    start = std::min(start, it->first);
    end = std::max(end, it->second);
    it = ranges_.erase(it);
  }
  ranges_.emplace(start, end);
}

void PageRangeSet::remove(uint64_t start, uint64_t end) {
  if (start >= end) return;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin()) --it;
  while (it != ranges_.end() && it->first < end) {
    uint64_t s = it->first, e = it->second;
    if (e <= start) {
      ++it;
      continue;
    }
    it = ranges_.erase(it);
    if (s < start) ranges_.emplace(s, start);
    if (e > end) {
      ranges_.emplace(end, e);
      break;
    }
  }
}

void PageRangeSet::split(uint64_t start, uint64_t end, kj::Vector<PageSpan>* in, kj::Vector<PageSpan>* out) const {
  auto emit = [](kj::Vector<PageSpan>* v, uint64_t s, uint64_t e) {
    if (v == nullptr || s >= e) return;
    if (!v->empty() && v->back().addr + v->back().pages * kPage == s) {
      v->back().pages += (e - s) / kPage;
    } else {
      v->add(PageSpan{s, (e - s) / kPage});
    }
  };
  uint64_t at = start;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin()) --it;
  for (; it != ranges_.end() && it->first < end; ++it) {
    if (it->second <= at) continue;
    uint64_t s = std::max(it->first, at), e = std::min(it->second, end);
    emit(out, at, s);
    emit(in, s, e);
    at = e;
  }
  emit(out, at, end);
}

uint64_t PageRangeSet::pages() const {
  uint64_t n = 0;
  for (auto& r : ranges_) n += (r.second - r.first) / kPage;
  return n;
}

bool trackable(const MappedRegion& r) {
  using K = image::schema::MemoryRegion::Kind;
  if (r.kind == K::VDSO || r.kind == K::VVAR || r.kind == K::VVAR_VCLOCK) return false;
  // Shared memory would need UFFD_FEATURE_WP_HUGETLBFS_SHMEM and is written by other
  // processes too; it is sent while the job is frozen.
  return r.flags == MAP_PRIVATE;
}

MappedRegion partOf(const MappedRegion& r, uint64_t start, uint64_t end) {
  MappedRegion n{};
  n.start = start;
  n.end = end;
  n.prot = r.prot;
  n.flags = r.flags;
  n.kind = r.kind;
  n.path = kj::heapString(r.path);
  n.offset = r.offset + (start - r.start);
  n.inode = r.inode;
  n.saveWhole = r.saveWhole;
  return n;
}

DirtyPageTracker::DirtyPageTracker(pid_t pid, int uffd)
    : pid_(pid), uffd_(uffd), vec_(kj::heapArray<pagemap_scan::PageRegion>(kScanVec)) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
  pagemap_ = ::open(path, O_RDONLY | O_CLOEXEC);
  if (pagemap_ < 0) {
    int err = errno;
    ::close(uffd_);
    fail(kj::str("cannot open ", path, ": ", strerror(err)));
  }
}

DirtyPageTracker::~DirtyPageTracker() noexcept(false) {
  ::close(pagemap_);
  ::close(uffd_);  // the kernel unregisters every range of the job
}

bool DirtyPageTracker::registerRange(uint64_t start, uint64_t end) {
  struct uffdio_register reg {};
  reg.range.start = start;
  reg.range.len = end - start;
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  return ioctl(uffd_, UFFDIO_REGISTER, &reg) == 0;
}

bool DirtyPageTracker::scan(uint64_t start, uint64_t end, PageRangeSet& written) {
  using namespace pagemap_scan;
  while (start < end) {
    Arg arg{};
    arg.size = sizeof(arg);
    arg.flags = kWpMatching | kCheckWpAsync;
    arg.start = start;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(vec_.begin());
    arg.vecLen = vec_.size();
    arg.categoryMask = kIsWritten;
    arg.returnMask = kIsWritten;
    ++scans_;
    int n = ioctl(pagemap_, kIoctl, &arg);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno == EPERM) return false;  // a range not registered (PM_SCAN_CHECK_WPASYNC)
      fail(kj::str("cannot scan the written pages of process ", pid_, " (PAGEMAP_SCAN): ", strerror(errno)));
    }
    for (int i = 0; i < n; ++i) written.add(vec_[i].start, vec_[i].end);
    if (arg.walkEnd <= start) fail(kj::str("PAGEMAP_SCAN of process ", pid_, " made no progress"));
    start = arg.walkEnd;
  }
  return true;
}

void DirtyPageTracker::collect(kj::ArrayPtr<const MappedRegion> regions, PageRangeSet& written,
                               PageRangeSet& untracked) {
  for (const MappedRegion& r : regions) {
    if (!trackable(r)) {
      untracked.add(r.start, r.end);
      continue;
    }
    if (scan(r.start, r.end, written)) continue;
    // New to us (mapped, grown or remapped since the last look): register it and take
    // it as written whole; the scan after registering protects it.
    if (!registerRange(r.start, r.end) || !scan(r.start, r.end, written)) {
      untracked.add(r.start, r.end);
      continue;
    }
    written.add(r.start, r.end);
  }
}

bool scanPages(int pagemap, uint64_t start, uint64_t end, pagemap_scan::Arg a,
               kj::FunctionParam<void(const pagemap_scan::PageRegion&)> each) {
  constexpr size_t kVec = 512;
  pagemap_scan::PageRegion vec[kVec];
  a.size = sizeof(a);
  a.start = start;
  a.end = end;
  a.vec = reinterpret_cast<uint64_t>(vec);
  a.vecLen = kVec;
  while (a.start < end) {
    long n = ioctl(pagemap, pagemap_scan::kIoctl, &a);
    if (n < 0) {
      if (errno == EINTR) continue;  // a.start is where to go on from
      return false;
    }
    for (long i = 0; i < n; ++i) each(vec[i]);
    if (a.walkEnd <= a.start) break;
    a.start = a.walkEnd;
  }
  return true;
}

bool scanPresent(int pagemap, uint64_t start, uint64_t end, kj::Vector<PageSpan>& out, bool privateFile) {
  constexpr uint64_t kPage = 4096;
  pagemap_scan::Arg a{};
  // The page map rule, in the scan's terms: swapped, or present and (for a private file
  // mapping) a private copy rather than the file's page. PAGE_IS_FILE is the kernel's
  // PM_FILE test, asked only of a file mapping: the kernel then looks at each present
  // page's struct page, which made the walk of 1 GiB of anonymous memory 60-130 ms
  // instead of 4-27 ms on the test VM (most of a post-copy freeze, issue 14).
  a.categoryAnyofMask = pagemap_scan::kIsPresent | pagemap_scan::kIsSwapped;
  a.returnMask = pagemap_scan::kIsPresent | pagemap_scan::kIsSwapped | (privateFile ? pagemap_scan::kIsFile : 0);
  const size_t first = out.size();
  bool scanned = scanPages(pagemap, start, end, a, [&](const pagemap_scan::PageRegion& r) {
    uint64_t c = r.categories;
    if (privateFile && !(c & pagemap_scan::kIsSwapped) && (c & pagemap_scan::kIsFile)) return;
    if (out.size() > first && out.back().addr + out.back().pages * kPage == r.start) {
      out.back().pages += (r.end - r.start) / kPage;
    } else {
      out.add(PageSpan{r.start, (r.end - r.start) / kPage});
    }
  });
  if (!scanned) out.resize(first);
  return scanned;
}

}  // namespace mig::resources
