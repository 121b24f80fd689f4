// Post-copy's split of a frozen job's memory: which pages stay home (listed) and which
// travel in the image, and the live job's own pages found by PAGEMAP_SCAN.
#include "resources/network_page_source.h"

#include "image/image_test_util.h"
#include "resources/page_source.h"

#include <sys/mman.h>
#include <unistd.h>

namespace mig::resources {
namespace {

using K = image::schema::MemoryRegion::Kind;

// Says every page of every region is to be saved.
class AllPages final : public PageSource {
 public:
  kj::Array<MappedRegion> regions() override { return nullptr; }
  void pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) override {
    out.add(PageSpan{r.start, (r.end - r.start) / 4096});
  }
  void read(uint64_t, void*, size_t) override {}
};

MappedRegion region(uint64_t start, uint64_t bytes, K kind, uint32_t flags = MAP_PRIVATE, const char* path = "") {
  return MappedRegion{start, start + bytes, PROT_READ | PROT_WRITE, flags, kind, kj::str(path), 0, 0, false};
}

TEST_CASE("post-copy leaves big private anonymous regions home and sends the rest") {
  AllPages all;
  PostcopySource pc(all);
  kj::Vector<PageSpan> saved;
  pc.pagesToSave(region(0x10000000, 4 << 20, K::ANONYMOUS), saved);                  // big: home
  pc.pagesToSave(region(0x20000000, 2 << 20, K::HEAP), saved);                       // big heap: home
  pc.pagesToSave(region(0x30000000, 64 << 10, K::ANONYMOUS), saved);                 // small: sent
  pc.pagesToSave(region(0x40000000, 4 << 20, K::ANONYMOUS, MAP_SHARED), saved);      // shared: sent
  pc.pagesToSave(region(0x50000000, 4 << 20, K::STACK), saved);                      // main stack: sent
  pc.pagesToSave(region(0x60000000, 4 << 20, K::FILE, MAP_PRIVATE, "/bin/true"), saved);  // file: sent
  REQUIRE(pc.remote().size() == 2);
  CHECK(pc.remote()[0].addr == 0x10000000);
  CHECK(pc.remote()[1].addr == 0x20000000);
  CHECK(pc.remoteBytes() == (6u << 20));
  REQUIRE(saved.size() == 4);
  CHECK(saved[0].addr == 0x30000000);
  CHECK(saved[3].addr == 0x60000000);
}

TEST_CASE("post-copy finds a live process's touched pages of a region with PAGEMAP_SCAN") {
  constexpr size_t kBytes = 4 << 20;
  auto* p = static_cast<char*>(mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  REQUIRE(p != MAP_FAILED);
  madvise(p, kBytes, MADV_NOHUGEPAGE);  // page by page, whatever the THP setting
  for (size_t i = 0; i < kBytes / 2; i += 4096) p[i] = 1;  // the first half touched
  AllPages all;
  PostcopySource pc(all, getpid());
  kj::Vector<PageSpan> saved;
  pc.pagesToSave(region(reinterpret_cast<uint64_t>(p), kBytes, K::ANONYMOUS), saved);
  CHECK(saved.size() == 0);
  REQUIRE(pc.remote().size() >= 1);
  // PAGEMAP_SCAN (Linux >= 6.7) gives the touched half; an older kernel falls back to
  // the inner source, which here says every page.
  CHECK((pc.remoteBytes() == kBytes / 2 || pc.remoteBytes() == kBytes));
  CHECK(pc.remote()[0].addr == reinterpret_cast<uint64_t>(p));
  munmap(p, kBytes);
}

TEST_CASE("post-copy lists a region mostly present before the freeze whole, and walks a sparse one") {
  constexpr size_t kBytes = 4 << 20, kGuard = 4096;
  // Two regions between inaccessible pages, which keep the kernel from merging them
  // with each other or a neighbour.
  const size_t total = 3 * kGuard + 2 * kBytes;
  auto* base = static_cast<char*>(mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  REQUIRE(base != MAP_FAILED);
  char* dense = base + kGuard;
  char* sparse = dense + kBytes + kGuard;
  for (char* p : {dense, sparse}) {
    REQUIRE(mprotect(p, kBytes, PROT_READ | PROT_WRITE) == 0);
    madvise(p, kBytes, MADV_NOHUGEPAGE);
  }
  for (size_t i = 0; i < kBytes * 3 / 4; i += 4096) dense[i] = 1;   // 3 MiB of 4
  for (size_t i = 0; i < kBytes * 3 / 8; i += 4096) sparse[i] = 1;  // 1.5 MiB of 4
  ProcPageSource maps(getpid());
  kj::Array<RegionSpan> found = densePostcopyRegions(maps, getpid());
  const auto d = reinterpret_cast<uint64_t>(dense), s = reinterpret_cast<uint64_t>(sparse);
  bool denseFound = false;
  for (const RegionSpan& r : found) {
    CHECK(r.start != s);
    if (r.start == d && r.end == d + kBytes) denseFound = true;
  }
  REQUIRE(denseFound);  // (a kernel without PAGEMAP_SCAN finds none: Linux >= 6.7 here)
  // Touched after the look, before the freeze: whole, its new page is among the listed.
  dense[kBytes - 4096] = 2;
  AllPages all;
  PostcopySource pc(all, getpid(), kj::mv(found));
  kj::Vector<PageSpan> saved;
  pc.pagesToSave(region(d, kBytes, K::ANONYMOUS), saved);
  pc.pagesToSave(region(s, kBytes, K::ANONYMOUS), saved);
  CHECK(saved.size() == 0);
  REQUIRE(pc.remote().size() == 2);
  CHECK(pc.remote()[0].addr == d);
  CHECK(pc.remote()[0].pages == kBytes / 4096);  // whole, unwalked
  CHECK(pc.remote()[1].addr == s);
  CHECK(pc.remote()[1].pages == kBytes * 3 / 8 / 4096);  // walked: its present pages only
  CHECK(pc.remoteBytes() == kBytes + kBytes * 3 / 8);
  // A region with other bounds at the freeze (remapped since) is walked.
  PostcopySource again(all, getpid(), densePostcopyRegions(maps, getpid()));
  again.pagesToSave(region(d, kBytes / 2, K::ANONYMOUS), saved);
  REQUIRE(again.remote().size() == 1);
  CHECK(again.remote()[0].pages == kBytes / 2 / 4096);
  munmap(base, total);
}

// Says what a fixed list of regions holds, and counts how often it is asked.
class Listed final : public PageSource {
 public:
  kj::Array<MappedRegion> regions() override {
    ++looks;
    auto list = kj::heapArrayBuilder<MappedRegion>(3);
    list.add(region(0x10000000, 4 << 20, K::ANONYMOUS));
    list.add(region(0x30000000, 64 << 10, K::ANONYMOUS));
    list.add(region(0x60000000, 8 << 10, K::FILE, MAP_PRIVATE, "/bin/true"));
    return list.finish();
  }
  void pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) override {
    ++walks;
    out.add(PageSpan{r.start, (r.end - r.start) / 4096});
  }
  void read(uint64_t, void*, size_t) override {}
  int looks = 0, walks = 0;
};

TEST_CASE("post-copy's walk done ahead (on another thread) answers as the walk in turn does") {
  Listed inner;
  PostcopySource ahead(inner);
  ahead.prefetch();
  CHECK(inner.looks == 1);
  CHECK(inner.walks == 3);
  CHECK(ahead.remoteBytes() == (4u << 20));  // found by the walk ahead, before any pagesToSave
  kj::Array<MappedRegion> regions = ahead.regions();
  REQUIRE(regions.size() == 3);
  kj::Vector<PageSpan> saved;
  for (const MappedRegion& r : regions) ahead.pagesToSave(r, saved);
  CHECK(inner.looks == 1);  // nothing looked at or walked again
  CHECK(inner.walks == 3);
  CHECK(ahead.remote().size() == 1);  // the big region listed once
  REQUIRE(saved.size() == 2);
  CHECK(saved[0].addr == 0x30000000);
  CHECK(saved[1].addr == 0x60000000);
  // A region it did not see (a part of one) is walked as before.
  ahead.pagesToSave(region(0x30000000, 8 << 10, K::ANONYMOUS), saved);
  CHECK(inner.walks == 4);
  CHECK(saved.size() == 3);
  // And regions() once taken asks the source again.
  CHECK(ahead.regions().size() == 3);
  CHECK(inner.looks == 2);
}

}  // namespace
}  // namespace mig::resources
