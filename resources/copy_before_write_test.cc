// Concurrent checkpoint: a child process stopped (the freeze), its memory read once
// stop-the-world and once through CopyBeforeWrite while the child, continued halfway,
// read()s into a protected buffer (a kernel write), forks a child that writes its copy
// of every page, and rewrites every page itself. Both
// readings must be equal; memory the child unmaps before it was written out must make
// the concurrent one unusable. Needs a userfaultfd that takes kernel faults (root).
// FrozenCopy (periodic images): what it copied at the freeze is what it reads back after
// the child rewrote its memory; the pages a chain holds already are not copied; a copy
// cut into parts on several threads is the memory as one copy would read it; pages
// copied while the job ran are taken again only where written since; its buffer is made
// before the first freeze only.
#include "image/image_error.h"
#include "resources/copy_before_write.h"
#include "shim/fd_passing.h"
#include "shim/write_tracking.h"

#include <doctest/doctest.h>
#include <kj/exception.h>

#include <csignal>
#include <fcntl.h>
#include <kj/io.h>
#include <sys/ioctl.h>
#include <cstring>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::resources {
namespace {

constexpr size_t P = 4096;
constexpr size_t kPages = 2048;  // 8 MiB

enum class After { rewrite, unmap };

struct Child {
  pid_t pid = -1;
  int sock = -1;  // ours: the child's uffd arrives on it, then one byte when it is done
  int uffd = -1;
  uint64_t region = 0;
};

// The child: fills a region, makes its userfaultfd, hands it over and stops itself.
// Continued, it does `after` and says so with one byte, then waits to be killed.
[[noreturn]] void childMain(int sock, After after) {
  auto* mem = static_cast<unsigned char*>(
      mmap(nullptr, kPages * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (mem == MAP_FAILED) _exit(3);
  for (size_t i = 0; i < kPages * P; ++i) mem[i] = static_cast<unsigned char>(i * 7 + i / P);
  int pipefd[2];
  if (pipe(pipefd) != 0) _exit(3);
  unsigned char block[P];
  memset(block, 0xee, sizeof(block));
  if (write(pipefd[1], block, sizeof(block)) != static_cast<ssize_t>(sizeof(block))) _exit(3);
  int uffd = control::makeCopyOnWriteUffd();
  if (uffd < 0) _exit(4);
  uint64_t region = reinterpret_cast<uint64_t>(mem);
  if (control::sendFd(sock, uffd, &region, sizeof(region)) != sizeof(region)) _exit(3);
  close(uffd);
  raise(SIGSTOP);
  if (after == After::rewrite) {
    // A kernel write into a page that is still protected: must wait, not fail.
    if (read(pipefd[0], mem + (kPages - 1) * P, P) != static_cast<ssize_t>(P)) _exit(5);
    // A child forked during the write-out writes its own copy (untracked) ...
    pid_t grandchild = fork();
    if (grandchild == 0) {
      for (size_t i = 0; i < kPages * P; i += 64) mem[i] = 0x77;
      _exit(mem[(kPages - 1) * P] == 0x77 ? 0 : 6);
    }
    int status = 0;
    if (grandchild < 0 || waitpid(grandchild, &status, 0) != grandchild || status != 0) _exit(6);
    // ... and the job its own, after the fork.
    for (size_t i = 0; i < (kPages - 1) * P; i += 64) mem[i] = 0x55;
  } else {
    munmap(mem, kPages * P);
  }
  char done = 'd';
  if (write(sock, &done, 1) != 1) _exit(3);
  for (;;) pause();
}

Child startChild(After after) {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  Child c;
  c.pid = fork();
  REQUIRE(c.pid >= 0);
  if (c.pid == 0) {
    close(sv[0]);
    childMain(sv[1], after);
  }
  close(sv[1]);
  c.sock = sv[0];
  control::receiveFd(c.sock, &c.region, sizeof(c.region), &c.uffd);
  int status = 0;
  REQUIRE(waitpid(c.pid, &status, WUNTRACED) == c.pid);
  REQUIRE_MESSAGE(WIFSTOPPED(status),
                  "the child could not make a userfaultfd that takes kernel faults (needs root): status ", status);
  REQUIRE(c.uffd >= 0);
  return c;
}

void endChild(Child& c) {
  kill(c.pid, SIGKILL);
  waitpid(c.pid, nullptr, 0);
  close(c.sock);
}

void waitDone(Child& c) {
  struct pollfd p = {c.sock, POLLIN, 0};
  REQUIRE(poll(&p, 1, 30000) == 1);
  char b = 0;
  REQUIRE(read(c.sock, &b, 1) == 1);
}

// Every saved page of `src` in address order, and how many bytes that is.
kj::Vector<PageSpan> allSpans(PageSource& src) {
  kj::Vector<PageSpan> out;
  for (const MappedRegion& r : src.regions()) {
    kj::Vector<PageSpan> spans;  // runs of one region (a source merges runs within one)
    src.pagesToSave(r, spans);
    out.addAll(spans);
  }
  return out;
}

// The categories of `addr`'s page (PAGEMAP_SCAN of this process).
uint64_t pageCategories(const void* addr) {
  kj::AutoCloseFd pagemap(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  pagemap_scan::PageRegion vec[1];
  pagemap_scan::Arg a{};
  a.size = sizeof(a);
  a.start = reinterpret_cast<uint64_t>(addr);
  a.end = a.start + P;
  a.vec = reinterpret_cast<uint64_t>(vec);
  a.vecLen = 1;
  a.categoryAnyofMask = a.returnMask = pagemap_scan::kIsPresent | pagemap_scan::kIsPfnZero | pagemap_scan::kIsHuge;
  return ioctl(pagemap.get(), pagemap_scan::kIoctl, &a) == 1 ? vec[0].categories : 0;
}

TEST_CASE("a concurrent checkpoint reads the memory of the freeze while the job writes") {
  // Also with the job's memory made huge pages first, as migctl does (each protected
  // page is then part of a 2 MiB one that a write or a kernel write splits).
  bool huge = false;
  SUBCASE("4 KiB pages") {}
  SUBCASE("made huge before the freeze") { huge = true; }
  Child c = startChild(After::rewrite);
  KJ_DEFER(endChild(c));
  ProcPageSource proc(c.pid);
  if (huge) CHECK(collapseForProtection(c.pid, proc) >= 3 * (2u << 20));  // 8 MiB hold at least 3 whole blocks
  // Stop-the-world: what the image must hold.
  kj::Vector<PageSpan> spans = allSpans(proc);
  kj::Vector<kj::Array<kj::byte>> want;
  for (const PageSpan& s : spans) {
    auto b = kj::heapArray<kj::byte>(s.pages * P);
    proc.read(s.addr, b.begin(), b.size());
    want.add(kj::mv(b));
  }
  CopyBeforeWrite cow(c.pid, c.uffd, proc);
  kj::Vector<PageSpan> cowSpans = allSpans(cow);
  REQUIRE(cowSpans.size() == spans.size());
  // What lies below the child's region is read before the child runs, the rest after it
  // rewrote everything.
  size_t half = 0;  // the span that holds the child's region
  while (half < spans.size() && spans[half].addr + spans[half].pages * P <= c.region) ++half;
  size_t mismatches = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    if (i == half) {
      REQUIRE(kill(c.pid, SIGCONT) == 0);
      waitDone(c);
    }
    CHECK((cowSpans[i].addr == spans[i].addr && cowSpans[i].pages == spans[i].pages));
    auto got = kj::heapArray<kj::byte>(spans[i].pages * P);
    cow.read(spans[i].addr, got.begin(), got.size());
    if (memcmp(got.begin(), want[i].begin(), got.size()) != 0) ++mismatches;
  }
  CHECK(mismatches == 0);
  kj::String why;
  CHECK_MESSAGE(cow.finish(why), why);
  CHECK(cow.stats().faultCopies >= kPages / 2);  // the child's region was written after half
  CHECK(cow.stats().protectedPages >= kPages);
  // The child's kernel write went through (it said done) and its page holds the pipe's bytes.
  unsigned char last[P];
  proc.read(c.region + (kPages - 1) * P, last, P);
  CHECK(last[0] == 0xee);
}

TEST_CASE("only blocks whose every page the job wrote are made huge") {
  constexpr size_t kHuge = 2u << 20;
  auto* raw = static_cast<char*>(mmap(nullptr, 5 * kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  REQUIRE(raw != MAP_FAILED);
  KJ_DEFER(munmap(raw, 5 * kHuge));
  char* block = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + kHuge - 1) & ~(kHuge - 1));
  // 4 KiB pages whatever the THP setting: while one page of each block is another
  // mapping, no block fits a huge page; faulted then, each gets a page table of its own.
  for (int b = 0; b < 3; ++b) REQUIRE(mprotect(block + b * kHuge + P, P, PROT_READ) == 0);
  block[0] = 1;
  volatile char sum = block[kHuge];
  block[2 * kHuge] = 1;
  REQUIRE(mprotect(block, 3 * kHuge, PROT_READ | PROT_WRITE) == 0);
  memset(block, 1, kHuge);                                        // block 0: written
  for (size_t i = 0; i < kHuge; i += P) sum += block[kHuge + i];  // block 1: read only (zero page)
  memset(block + 2 * kHuge, 1, kHuge - P);                        // block 2: all but one page
  (void)sum;
  REQUIRE(!(pageCategories(block) & pagemap_scan::kIsHuge));
  ProcPageSource self(getpid());
  collapseForProtection(getpid(), self);
  CHECK((pageCategories(block) & pagemap_scan::kIsHuge));
  CHECK(block[0] == 1);
  CHECK(!(pageCategories(block + kHuge) & pagemap_scan::kIsHuge));  // memory use unchanged
  CHECK((pageCategories(block + kHuge) & pagemap_scan::kIsPfnZero));
  CHECK(!(pageCategories(block + 2 * kHuge) & pagemap_scan::kIsHuge));
}

TEST_CASE("memory unmapped before it was written out makes the concurrent image unusable") {
  Child c = startChild(After::unmap);
  KJ_DEFER(endChild(c));
  ProcPageSource proc(c.pid);
  CopyBeforeWrite cow(c.pid, c.uffd, proc);
  REQUIRE(kill(c.pid, SIGCONT) == 0);
  waitDone(c);
  for (const PageSpan& s : allSpans(cow)) {
    auto got = kj::heapArray<kj::byte>(s.pages * P);
    cow.read(s.addr, got.begin(), got.size());
  }
  kj::String why;
  CHECK_FALSE(cow.finish(why));
  CHECK(why.size() > 0);
}

TEST_CASE("a periodic image's pages are copied at the freeze and read back after the job wrote them") {
  Child c = startChild(After::rewrite);
  KJ_DEFER(endChild(c));
  close(c.uffd);  // FrozenCopy protects nothing
  ProcPageSource proc(c.pid);
  kj::Vector<PageSpan> spans = allSpans(proc);
  // The child's region's second half is held by the chain already: not copied, but still
  // answered by pagesToSave (writeMemory lists it as kept).
  PageRangeSet held;
  held.add(c.region + kPages / 2 * P, c.region + kPages * P);
  kj::Vector<kj::Array<kj::byte>> want;
  for (const PageSpan& s : spans) {
    auto b = kj::heapArray<kj::byte>(s.pages * P);
    proc.read(s.addr, b.begin(), b.size());
    want.add(kj::mv(b));
  }
  kj::Array<kj::byte> buffer;
  PageStore store(buffer);
  FrozenCopy copy(proc, &held, uint64_t{1} << 40, store);
  REQUIRE(copy.copied());
  kj::Vector<PageSpan> copySpans = allSpans(copy);
  REQUIRE(copySpans.size() == spans.size());
  REQUIRE(kill(c.pid, SIGCONT) == 0);
  waitDone(c);  // the child rewrote every page of its region
  size_t mismatches = 0, refused = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    CHECK((copySpans[i].addr == spans[i].addr && copySpans[i].pages == spans[i].pages));
    kj::Vector<PageSpan> notHeld;
    held.split(spans[i].addr, spans[i].addr + spans[i].pages * P, nullptr, &notHeld);
    for (const PageSpan& s : notHeld) {
      auto got = kj::heapArray<kj::byte>(s.pages * P);
      copy.read(s.addr, got.begin(), got.size());
      if (memcmp(got.begin(), want[i].begin() + (s.addr - spans[i].addr), got.size()) != 0) ++mismatches;
    }
  }
  CHECK(mismatches == 0);
  // A held page was not copied: reading it is refused, never taken from the running job.
  kj::byte page[P];
  try {
    copy.read(c.region + (kPages - 2) * P, page, P);
  } catch (const kj::Exception&) {
    ++refused;
  }
  CHECK(refused == 1);
  // Over the limit nothing is copied and reads go to the (frozen) job.
  kj::Array<kj::byte> noBuffer;
  PageStore noStore(noBuffer);
  FrozenCopy none(proc, &held, 0, noStore);
  CHECK_FALSE(none.copied());
  CHECK(none.bytes() == copy.bytes());
}

TEST_CASE("pages copied while the job ran are not copied again in the freeze unless written since") {
  Child c = startChild(After::rewrite);
  KJ_DEFER(endChild(c));
  close(c.uffd);
  ProcPageSource proc(c.pid);
  const uint64_t second = c.region + kPages / 2 * P;  // the region's second half
  kj::Array<kj::byte> buffer;
  PageStore store(buffer);
  // A round while the job "runs": the whole region, then its first page again.
  PageSpan round[] = {{c.region, kPages}};
  REQUIRE(store.copy(proc, round, uint64_t{1} << 40));
  PageSpan again[] = {{c.region, 1}};
  REQUIRE(store.copy(proc, again, uint64_t{1} << 40));
  CHECK(store.bytes() == kPages * P);  // copied again in its place, not a second time
  auto before = kj::heapArray<kj::byte>(kPages * P);
  proc.read(c.region, before.begin(), before.size());
  REQUIRE(kill(c.pid, SIGCONT) == 0);
  waitDone(c);  // every page but the last rewritten
  // The tracker saw the first half written: only that half is copied in the freeze.
  PageRangeSet current;
  current.add(second, c.region + kPages * P);
  FrozenCopy copy(proc, nullptr, uint64_t{1} << 40, store, &current);
  REQUIRE(copy.copied());
  CHECK(copy.copiedFrozen() < copy.bytes());
  auto now = kj::heapArray<kj::byte>(kPages / 2 * P);
  proc.read(c.region, now.begin(), now.size());
  auto got = kj::heapArray<kj::byte>(kPages * P);
  copy.read(c.region, got.begin(), got.size());
  CHECK(memcmp(got.begin(), now.begin(), now.size()) == 0);  // as in the freeze
  CHECK(memcmp(got.begin() + now.size(), before.begin() + now.size(), now.size()) == 0);  // as copied before
  CHECK(memcmp(now.begin(), before.begin(), now.size()) != 0);  // the child did write
  // Over the limit, nothing is copied and the store is as it was.
  PageSpan more[] = {{c.region, kPages}};
  kj::Array<kj::byte> small;
  PageStore capped(small);
  CHECK_FALSE(capped.copy(proc, more, P));
  CHECK(capped.bytes() == 0);
}

TEST_CASE("a frozen copy cut into parts on several threads is the memory, run for run") {
  // 48 MiB of this process's memory, each page marked with its number, read as runs of
  // 1 to 7 pages with gaps between them: the parts' cuts fall inside runs.
  constexpr size_t kMem = 12288;
  auto mem = kj::heapArray<uint64_t>(kMem * P / sizeof(uint64_t));
  for (size_t i = 0; i < kMem; ++i) mem[i * P / sizeof(uint64_t)] = i + 1;
  uint64_t base = reinterpret_cast<uint64_t>(mem.begin());
  kj::Vector<PageSpan> spans;
  uint64_t bytes = 0;
  for (size_t page = 0, len = 1; page + len <= kMem; page += len + 1, len = len % 7 + 1) {
    spans.add(PageSpan{base + page * P, len});
    bytes += len * P;
  }
  REQUIRE(bytes > 2 * (8u << 20));  // more than one part
  ProcPageSource proc(getpid());
  auto got = kj::heapArray<kj::byte>(bytes);
  copyInParts(proc, spans, bytes, got.begin());
  size_t wrong = 0, at = 0;
  for (const PageSpan& s : spans) {
    for (size_t i = 0; i < s.pages; ++i, at += P) {
      uint64_t mark;
      memcpy(&mark, got.begin() + at, sizeof(mark));
      if (mark != (s.addr - base) / P + i + 1) ++wrong;
    }
  }
  CHECK(wrong == 0);
  CHECK(at == bytes);
}

TEST_CASE("the frozen copy's buffer is made before the first freeze only, within its limit") {
  kj::Array<kj::byte> buffer;
  growFrozenCopyBuffer(getpid(), uint64_t{1} << 40, buffer);
  CHECK(buffer.size() > 0);  // this process's resident memory
  const kj::byte* made = buffer.begin();
  growFrozenCopyBuffer(getpid(), uint64_t{1} << 40, buffer);
  CHECK(buffer.begin() == made);  // kept: later images grow it only if they need to
  kj::Array<kj::byte> capped;
  growFrozenCopyBuffer(getpid(), 3 * P, capped);
  CHECK(capped.size() == 3 * P);
  kj::Array<kj::byte> none;
  growFrozenCopyBuffer(getpid(), 0, none);  // MIG_CHAIN_COPY_LIMIT_MIB=0: nothing copied
  CHECK(none.size() == 0);
}

}  // namespace
}  // namespace mig::resources
