// See copy_before_write.h.
#include "resources/copy_before_write.h"

#include "image/image_error.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <exception>
#include <thread>

namespace mig::resources {
namespace {

constexpr uint64_t kPage = 4096;
using K = image::schema::MemoryRegion::Kind;

// Private anonymous memory (heap, stacks, anonymous mappings): the kind the kernel
// write-protects synchronously. Private file mappings it protects only asynchronously;
// shared memory is written by other processes too.
bool protectable(const MappedRegion& r) {
  return r.flags == MAP_PRIVATE && !r.saveWhole && (r.kind == K::ANONYMOUS || r.kind == K::HEAP || r.kind == K::STACK);
}

bool registerWp(int uffd, uint64_t start, uint64_t end) {
  struct uffdio_register reg {};
  reg.range.start = start;
  reg.range.len = end - start;
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  return ioctl(uffd, UFFDIO_REGISTER, &reg) == 0;
}

// 0, or errno (EAGAIN: an event of the job's is being delivered; try again after it).
int writeProtect(int uffd, uint64_t start, uint64_t end, bool on) {
  struct uffdio_writeprotect wp {};
  wp.range.start = start;
  wp.range.len = end - start;
  wp.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0;  // lifting it wakes the writers waiting
  return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) == 0 ? 0 : errno;
}

constexpr uint64_t kHuge = 2u << 20;
constexpr int kMadvCollapse = 25;  // MADV_COLLAPSE (Linux 6.1; Debian 12's headers predate it)

// The 2 MiB blocks of [start, end) whose every page is present, private and not the
// zero page, and not a huge page already, appended to `out`.
bool collapsible(int pagemap, uint64_t start, uint64_t end, kj::Vector<struct iovec>& out) {
  pagemap_scan::Arg a{};
  a.categoryMask = pagemap_scan::kIsPresent | pagemap_scan::kIsPfnZero | pagemap_scan::kIsHuge;
  a.categoryInverted = pagemap_scan::kIsPfnZero | pagemap_scan::kIsHuge;
  return scanPages(pagemap, start, end, a, [&](const pagemap_scan::PageRegion& r) {
    for (uint64_t b = (r.start + kHuge - 1) & ~(kHuge - 1); b + kHuge <= r.end; b += kHuge) {
      out.add(iovec{reinterpret_cast<void*>(b), kHuge});
    }
  });
}

}  // namespace

uint64_t collapseForProtection(pid_t pid, PageSource& memory) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
  kj::AutoCloseFd pagemap(::open(path, O_RDONLY | O_CLOEXEC));
  kj::AutoCloseFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (pagemap == nullptr || pidfd == nullptr) return 0;
  kj::Vector<struct iovec> blocks;
  for (const MappedRegion& r : memory.regions()) {
    if (protectable(r) && !collapsible(pagemap, r.start, r.end, blocks)) return 0;
  }
  uint64_t done = 0;
  for (const struct iovec& b : blocks) {
    // One block per call: a block the kernel cannot make huge (EAGAIN: a page busy,
    // ENOMEM: no huge page free) ends a call with many, and says nothing of the rest.
    long n = syscall(SYS_process_madvise, pidfd.get(), &b, 1, kMadvCollapse, 0);
    if (n > 0) done += static_cast<uint64_t>(n);
    else if (errno == EPERM) break;  // not allowed (CAP_SYS_NICE): none will be
  }
  return done;
}

CopyBeforeWrite::CopyBeforeWrite(pid_t pid, int uffd, PageSource& frozen)
    : pid_(pid), uffd_(uffd) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/mem", pid);
  mem_ = ::open(path, O_RDONLY | O_CLOEXEC);
  wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (mem_ < 0 || wake_ < 0) {
    int err = errno;
    if (mem_ >= 0) ::close(mem_);
    if (wake_ >= 0) ::close(wake_);
    ::close(uffd_);
    image::fail(kj::str("cannot prepare the concurrent checkpoint of process ", pid, ": ", strerror(err)));
  }
  KJ_ON_SCOPE_FAILURE({
    ::close(mem_);
    ::close(wake_);
    ::close(uffd_);  // lifts every protection
  });
  snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
  kj::AutoCloseFd pagemap(::open(path, O_RDONLY | O_CLOEXEC));
  regions_ = frozen.regions();
  for (const MappedRegion& r : regions_) {
    kj::Vector<PageSpan> spans;
    if (!protectable(r) || pagemap == nullptr || !scanPresent(pagemap, r.start, r.end, spans)) {
      frozen.pagesToSave(r, spans);
    }
    if (!spans.empty()) {
      bool guarded = protectable(r) && registerWp(uffd_, r.start, r.end);
      if (guarded && writeProtect(uffd_, r.start, r.end, true) != 0) guarded = false;
      if (guarded) {
        tracked_.add(r.start, r.end);
        for (const PageSpan& s : spans) {
          protected_.add(s.addr, s.addr + s.pages * kPage);
          stats_.protectedPages += s.pages;
        }
      } else {
        for (const PageSpan& s : spans) {
          auto copy = kj::heapArray<kj::byte>(s.pages * kPage);
          frozen.read(s.addr, copy.begin(), copy.size());
          copies_.emplace(s.addr, kj::mv(copy));
          stats_.frozenPages += s.pages;
        }
      }
    }
    spans_.emplace(r.start, kj::mv(spans));
  }
  thread_ = std::thread([this]() { faultLoop(); });
}

CopyBeforeWrite::~CopyBeforeWrite() noexcept(false) {
  stopThread();
  if (uffd_ >= 0) ::close(uffd_);
  if (mem_ >= 0) ::close(mem_);
  if (wake_ >= 0) ::close(wake_);
}

kj::Array<MappedRegion> CopyBeforeWrite::regions() {
  auto out = kj::heapArrayBuilder<MappedRegion>(regions_.size());
  for (const MappedRegion& r : regions_) {
    out.add(partOf(r, r.start, r.end));
  }
  return out.finish();
}

void CopyBeforeWrite::pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) {
  auto it = spans_.find(r.start);
  if (it == spans_.end()) return;
  for (const PageSpan& s : it->second) {
    uint64_t from = std::max(s.addr, r.start), to = std::min(s.addr + s.pages * kPage, r.end);
    if (from < to) out.add(PageSpan{from, (to - from) / kPage});
  }
}

void CopyBeforeWrite::read(uint64_t addr, void* buf, size_t len) {
  auto* p = static_cast<kj::byte*>(buf);
  kj::Vector<PageSpan> still, copied;
  {
    std::lock_guard<std::mutex> lock(mu_);
    protected_.split(addr, addr + len, &still, &copied);
    // Not written by the job since the freeze (they are still protected): read as they are.
    for (const PageSpan& s : still) {
      kj::byte* at = p + (s.addr - addr);
      size_t n = s.pages * kPage;
      struct iovec local = {at, n}, remote = {reinterpret_cast<void*>(s.addr), n};
      ssize_t got = process_vm_readv(pid_, &local, 1, &remote, 1, 0);
      size_t done = got > 0 ? static_cast<size_t>(got) : 0;
      while (done < n) {  // pages the job may not read itself (PROT_NONE), through /proc
        ssize_t m = pread(mem_, at + done, n - done, static_cast<off_t>(s.addr + done));
        if (m <= 0) {
          memset(at + done, 0, n - done);
          if (!lost_.exchange(true)) {
            lostWhy_ = kj::str("the memory of process ", pid_, " at ", kj::hex(s.addr + done),
                               " could not be read during the write-out (",
                               m == 0 ? "the process ended or started another program" : strerror(errno), ")");
          }
          break;
        }
        done += static_cast<size_t>(m);
      }
    }
    protected_.remove(addr, addr + len);
    // Copied before the job wrote them, or while it was frozen.
    for (const PageSpan& s : copied) {
      for (uint64_t a = s.addr; a < s.addr + s.pages * kPage;) {
        auto it = copies_.upper_bound(a);
        if (it == copies_.begin() || a >= (--it)->first + it->second.size()) {
          // Gone before it was copied (onGone): the image is not to be used anyway.
          if (!lost_.load()) {
            image::fail(kj::str("concurrent checkpoint of process ", pid_, ": page ", kj::hex(a),
                                " was neither protected nor copied"));
          }
          memset(p + (a - addr), 0, kPage);
          a += kPage;
          continue;
        }
        uint64_t n = std::min<uint64_t>(it->first + it->second.size(), s.addr + s.pages * kPage) - a;
        memcpy(p + (a - addr), it->second.begin() + (a - it->first), n);
        a += n;
        if (a == it->first + it->second.size()) copies_.erase(it);  // each page is read once
      }
    }
  }
  // Written out: the job may write them without a fault from now on.
  for (const PageSpan& s : still) unprotect(s.addr, s.addr + s.pages * kPage);
}

void CopyBeforeWrite::unprotect(uint64_t start, uint64_t end) {
  if (writeProtect(uffd_, start, end, false) != EAGAIN) return;
  // An event of the job's is on its way to the fault thread: it lifts this after it.
  std::lock_guard<std::mutex> lock(mu_);
  pending_.add(PageSpan{start, (end - start) / kPage});
  uint64_t one = 1;
  (void)!::write(wake_, &one, sizeof(one));
}

void CopyBeforeWrite::onFault(uint64_t page) {
  std::lock_guard<std::mutex> lock(mu_);
  kj::Vector<PageSpan> still;
  protected_.split(page, page + kPage, &still, nullptr);
  if (still.empty()) return;  // written out already: only the protection is left to lift
  auto copy = kj::heapArray<kj::byte>(kPage);
  struct iovec local = {copy.begin(), kPage}, remote = {reinterpret_cast<void*>(page), kPage};
  if (process_vm_readv(pid_, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(kPage) &&
      pread(mem_, copy.begin(), kPage, static_cast<off_t>(page)) != static_cast<ssize_t>(kPage)) {
    if (!lost_.exchange(true)) {
      lostWhy_ = kj::str("page ", kj::hex(page), " of process ", pid_, " could not be copied before the job wrote it");
    }
  }
  protected_.remove(page, page + kPage);
  copies_.emplace(page, kj::mv(copy));
  ++stats_.faultCopies;
}

void CopyBeforeWrite::onGone(uint64_t start, uint64_t end, const char* how) {
  std::lock_guard<std::mutex> lock(mu_);
  kj::Vector<PageSpan> still;
  protected_.split(start, end, &still, nullptr);
  if (still.empty()) return;  // nothing of the freeze instant there any more to copy
  if (!lost_.exchange(true)) {
    lostWhy_ = kj::str("the job ", how, " memory at ", kj::hex(still[0].addr),
                       " before it was written out");
  }
  protected_.remove(start, end);
}

void CopyBeforeWrite::faultLoop() {
  kj::Vector<PageSpan> wakes;  // protection to lift, retried while an event is in flight
  for (;;) {
    struct pollfd fds[2] = {{uffd_, POLLIN, 0}, {wake_, POLLIN, 0}};
    if (poll(fds, 2, wakes.empty() ? -1 : 1) < 0 && errno != EINTR) break;
    if (fds[1].revents & POLLIN) {
      uint64_t n;
      (void)!::read(wake_, &n, sizeof(n));
    }
    struct uffd_msg msgs[32];
    ssize_t got;
    while ((got = ::read(uffd_, msgs, sizeof(msgs))) > 0) {
      for (size_t i = 0; i < static_cast<size_t>(got) / sizeof(uffd_msg); ++i) {
        const uffd_msg& m = msgs[i];
        switch (m.event) {
          case UFFD_EVENT_PAGEFAULT: {
            uint64_t page = m.arg.pagefault.address & ~(kPage - 1);
            onFault(page);
            wakes.add(PageSpan{page, 1});
            break;
          }
          case UFFD_EVENT_REMOVE:
            onGone(m.arg.remove.start, m.arg.remove.end, "discarded (madvise)");
            break;
          case UFFD_EVENT_UNMAP:
            onGone(m.arg.remove.start, m.arg.remove.end, "unmapped");
            break;
          case UFFD_EVENT_REMAP:
            onGone(m.arg.remap.from, m.arg.remap.from + m.arg.remap.len, "moved (mremap)");
            break;
          default:
            break;
        }
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const PageSpan& s : pending_) wakes.add(s);
      pending_.clear();
    }
    kj::Vector<PageSpan> again;
    for (const PageSpan& s : wakes) {
      if (writeProtect(uffd_, s.addr, s.addr + s.pages * kPage, false) == EAGAIN) again.add(s);
    }
    wakes = kj::mv(again);
    if (stop_.load() && wakes.empty()) break;
  }
}

void CopyBeforeWrite::stopThread() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  uint64_t one = 1;
  (void)!::write(wake_, &one, sizeof(one));
  thread_.join();
}

bool CopyBeforeWrite::finish(kj::String& why) {
  stopThread();
  // The address space of the freeze must still be the job's: an exec or an exit since
  // would have had the last pages read from another (or none).
  kj::byte probe;
  if (!lost_.load() && regions_.size() > 0 &&
      pread(mem_, &probe, 1, static_cast<off_t>(regions_[0].start)) == 0) {
    lost_.store(true);
    lostWhy_ = kj::str("process ", pid_, " ended or started another program during the write-out");
  }
  ::close(uffd_);  // unregisters every range: nothing of ours stays in the job
  uffd_ = -1;
  if (lost_.load()) {
    why = kj::str(lostWhy_);
    return false;
  }
  return true;
}

bool PageStore::copy(PageSource& source, kj::ArrayPtr<const PageSpan> spans, uint64_t limitBytes) {
  kj::Vector<PageSpan> again, fresh;  // pages with a place already, pages without
  for (const PageSpan& s : spans) placed_.split(s.addr, s.addr + s.pages * kPage, &again, &fresh);
  uint64_t freshBytes = 0;
  for (const PageSpan& s : fresh) freshBytes += s.pages * kPage;
  if (used_ + freshBytes > limitBytes) return false;
  reserve(freshBytes);
  // The new pages in one pass (on several threads) where they stay; the others into
  // their places, run by place.
  copyInParts(source, fresh, freshBytes, buffer_.begin() + used_);
  kj::Vector<PageSpan> pieces;
  kj::Vector<kj::byte*> to;
  for (const PageSpan& s : again) {
    for (uint64_t addr = s.addr, end = s.addr + s.pages * kPage; addr < end;) {
      uint64_t run;
      to.add(at(addr, run));
      run = std::min(run, end - addr);
      pieces.add(PageSpan{addr, run / kPage});
      addr += run;
    }
  }
  source.readSpans(pieces, kj::ArrayPtr<kj::byte* const>(to.begin(), to.size()));
  for (const PageSpan& s : fresh) {
    uint64_t len = s.pages * kPage;
    at_[s.addr] = {s.addr + len, used_};
    placed_.add(s.addr, s.addr + len);
    used_ += len;
  }
  return true;
}

void PageStore::reserve(uint64_t bytes) {
  if (buffer_.size() >= used_ + bytes) return;
  // A quarter more at least: a job that grows does not make every image grow it again.
  auto bigger = kj::heapArray<kj::byte>(std::max(used_ + bytes, buffer_.size() + buffer_.size() / 4));
  if (used_ > 0) memcpy(bigger.begin(), buffer_.begin(), used_);
  buffer_ = kj::mv(bigger);
}

kj::byte* PageStore::at(uint64_t addr, uint64_t& run) const {
  auto it = at_.upper_bound(addr);
  // Only what was copied is answered; anything else would be the running job's.
  KJ_REQUIRE(it != at_.begin(), "a page the frozen copy does not hold", addr);
  --it;
  KJ_REQUIRE(addr < it->second.first, "a page the frozen copy does not hold", addr);
  run = it->second.first - addr;
  return buffer_.begin() + it->second.second + (addr - it->first);
}

void PageStore::read(uint64_t addr, void* buf, size_t len) const {
  auto* p = static_cast<kj::byte*>(buf);
  while (len > 0) {
    uint64_t run;
    const kj::byte* from = at(addr, run);
    size_t n = std::min<uint64_t>(len, run);
    memcpy(p, from, n);
    p += n;
    addr += n;
    len -= n;
  }
}

FrozenCopy::FrozenCopy(PageSource& frozen, const PageRangeSet* held, uint64_t limitBytes, PageStore& store,
                       const PageRangeSet* current)
    : frozen_(frozen), regions_(frozen.regions()), store_(store) {
  // The same choice of pages as writeMemory's (memory.cc), made once here.
  kj::Vector<PageSpan> toCopy;
  for (const MappedRegion& r : regions_) {
    kj::Vector<PageSpan> spans;
    if (held != nullptr && r.saveWhole) {
      kj::Vector<PageSpan> rest;
      held->split(r.start, r.end, nullptr, &rest);
      for (const PageSpan& s : rest) frozen.pagesToSave(partOf(r, s.addr, s.addr + s.pages * kPage), spans);
    } else {
      frozen.pagesToSave(r, spans);
    }
    // writeMemory counts the held pages among these as kept: they are answered as they
    // are, and only the others copied.
    kj::Vector<PageSpan> changed;
    if (held != nullptr && !r.saveWhole) {
      for (const PageSpan& s : spans) held->split(s.addr, s.addr + s.pages * kPage, nullptr, &changed);
    } else {
      changed.addAll(spans);
    }
    for (const PageSpan& s : changed) {
      bytes_ += s.pages * kPage;
      // Copied while the job ran and not written since: as they are now.
      if (current != nullptr) {
        current->split(s.addr, s.addr + s.pages * kPage, nullptr, &toCopy);
      } else {
        toCopy.add(s);
      }
    }
    spans_[r.start] = kj::mv(spans);
  }
  for (const PageSpan& s : toCopy) copiedFrozen_ += s.pages * kPage;
  copied_ = store_.copy(frozen, toCopy, limitBytes);
}

void copyInParts(PageSource& frozen, kj::ArrayPtr<const PageSpan> spans, uint64_t bytes, kj::byte* buf) {
  // The copy is most of an image's freeze (docs/design.md "Speed of the paths that
  // copy"), and the job, frozen, leaves its cores to it: up to 4 threads copy a part
  // each (a single thread's memcpy uses one core's share of the memory bandwidth).
  // Parts of at least 8 MiB, as a thread's start would outweigh less.
  constexpr uint64_t kMinPart = 8u << 20;
  uint64_t cores = std::max(1u, std::thread::hardware_concurrency());
  uint64_t parts = std::min<uint64_t>({4, cores, std::max<uint64_t>(1, bytes / kMinPart)});
  uint64_t perPart = (bytes / parts + kPage - 1) & ~(kPage - 1);
  // Cut the runs into `parts` lists of about perPart bytes (a run across a cut is split).
  kj::Vector<kj::Vector<PageSpan>> cut;
  cut.add();
  uint64_t inPart = 0;
  for (PageSpan s : spans) {
    while (s.pages > 0) {
      if (inPart == perPart && cut.size() < parts) {
        cut.add();
        inPart = 0;
      }
      uint64_t take = cut.size() < parts ? std::min(s.pages, (perPart - inPart) / kPage) : s.pages;
      cut.back().add(PageSpan{s.addr, take});
      inPart += take * kPage;
      s.addr += take * kPage;
      s.pages -= take;
    }
  }
  kj::Vector<std::thread> threads;
  kj::Vector<std::exception_ptr> failed;
  failed.resize(cut.size());
  for (size_t i = 1; i < cut.size(); ++i) {
    threads.add([&, i] {
      try {
        frozen.readSpans(cut[i], buf + i * perPart);
      } catch (...) {
        failed[i] = std::current_exception();
      }
    });
  }
  try {
    frozen.readSpans(cut[0], buf);
  } catch (...) {
    failed[0] = std::current_exception();
  }
  for (auto& t : threads) t.join();
  for (auto& e : failed) {
    if (e) std::rethrow_exception(e);
  }
}

void growFrozenCopyBuffer(pid_t pid, uint64_t limitBytes, kj::Array<kj::byte>& buffer) {
  // Only the first: a later image holds what was written since, mostly far less, and
  // remaking the buffer each time the job grew would take its CPU at every period.
  if (buffer.size() > 0) return;
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  FILE* f = fopen(path, "re");
  if (f == nullptr) return;
  char line[128];
  unsigned long long kib = 0;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (sscanf(line, "VmRSS: %llu kB", &kib) == 1) break;
  }
  fclose(f);
  uint64_t want = std::min<uint64_t>(kib * 1024, limitBytes);
  if (want == 0) return;
  buffer = kj::heapArray<kj::byte>(want);
  memset(buffer.begin(), 0, buffer.size());  // its page faults here, not in the freeze
}

kj::Array<MappedRegion> FrozenCopy::regions() {
  auto out = kj::heapArrayBuilder<MappedRegion>(regions_.size());
  for (const MappedRegion& r : regions_) out.add(partOf(r, r.start, r.end));
  return out.finish();
}

void FrozenCopy::pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) {
  auto it = spans_.upper_bound(r.start);
  KJ_REQUIRE(it != spans_.begin(), "a region the frozen copy does not know", r.start);
  --it;
  for (const PageSpan& s : it->second) {
    uint64_t start = std::max(s.addr, r.start), end = std::min(s.addr + s.pages * kPage, r.end);
    if (start < end) out.add(PageSpan{start, (end - start) / kPage});
  }
}

void FrozenCopy::read(uint64_t addr, void* buf, size_t len) {
  if (!copied_) return frozen_.read(addr, buf, len);
  store_.read(addr, buf, len);
}

uint64_t frozenCopyLimit() {
  // For comparing with writing frozen in one run (bench/chain_bench.sh), and to cap it.
  if (const char* mib = getenv("MIG_CHAIN_COPY_LIMIT_MIB"); mib != nullptr && *mib != '\0') {
    return strtoull(mib, nullptr, 10) << 20;
  }
  FILE* f = fopen("/proc/meminfo", "re");
  if (f == nullptr) return 0;
  char line[128];
  unsigned long long kib = 0;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
  }
  fclose(f);
  return kib * 1024 / 2;
}

}  // namespace mig::resources
