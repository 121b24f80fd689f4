// Write tracking for pre-copy: the page range set, the round-stopping rule, and the
// tracker on this test's own memory (a userfaultfd tracks the process that made it):
// writes by the process, by the kernel (read() into a protected buffer) and by a
// forked child, and regions mapped after tracking began.
#include "image/checksum.h"
#include "image/file_reader.h"
#include "image/host_facts.h"
#include "image/image_test_util.h"
#include "resources/dirty_pages.h"
#include "resources/precopy.h"
#include "shim/write_tracking.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <cstring>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace mig::resources {
namespace {

constexpr uint64_t P = 4096;

kj::String show(const PageRangeSet& s) {
  kj::Vector<kj::String> parts;
  for (auto& r : s.ranges()) parts.add(kj::str(r.first / P, "-", r.second / P));
  return kj::strArray(parts, " ");
}

TEST_CASE("page range set merges, cuts and splits runs") {
  PageRangeSet s;
  s.add(2 * P, 4 * P);
  s.add(6 * P, 8 * P);
  CHECK(show(s) == "2-4 6-8");
  s.add(4 * P, 6 * P);  // touching both: one run
  CHECK(show(s) == "2-8");
  s.remove(3 * P, 5 * P);
  CHECK(show(s) == "2-3 5-8");
  s.add(0, 1 * P);
  s.remove(0, 6 * P);
  CHECK(show(s) == "6-8");
  s.add(10 * P, 12 * P);
  CHECK(s.pages() == 4);

  kj::Vector<PageSpan> in, out;
  s.split(5 * P, 11 * P, &in, &out);
  REQUIRE(in.size() == 2);
  CHECK((in[0].addr == 6 * P && in[0].pages == 2));
  CHECK((in[1].addr == 10 * P && in[1].pages == 1));
  REQUIRE(out.size() == 2);
  CHECK((out[0].addr == 5 * P && out[0].pages == 1));
  CHECK((out[1].addr == 8 * P && out[1].pages == 2));

  s.remove(0, 100 * P);
  CHECK(s.empty());
}

TEST_CASE("pre-copy rounds stop when small, not shrinking, or too many") {
  PrecopyRule rule;
  uint64_t big[] = {262144};
  CHECK_FALSE(rule.freezeNow(big));
  uint64_t converging[] = {262144, 10000, 400};
  CHECK_FALSE(rule.freezeNow(converging));
  uint64_t small[] = {262144, 10000, 200};
  CHECK(rule.freezeNow(small));
  uint64_t stuck[] = {262144, 10000, 9500};  // shrank by 5 %: the job writes as fast as we send
  CHECK(rule.freezeNow(stuck));
  uint64_t many[] = {262144, 100000, 50000, 25000, 12000, 6000, 3000, 1500};
  CHECK(rule.freezeNow(many));
  uint64_t tinyJob[] = {40};  // the whole job fits in one small round
  CHECK(rule.freezeNow(tinyJob));
}

MappedRegion anonRegion(void* at, size_t len) {
  MappedRegion r{};
  r.start = reinterpret_cast<uint64_t>(at);
  r.end = r.start + len;
  r.prot = PROT_READ | PROT_WRITE;
  r.flags = MAP_PRIVATE;
  r.kind = image::schema::MemoryRegion::Kind::ANONYMOUS;
  r.path = kj::heapString("");
  return r;
}

// Pages of `s` relative to `base`.
kj::String pagesOf(const PageRangeSet& s, void* base) {
  kj::Vector<kj::String> parts;
  uint64_t b = reinterpret_cast<uint64_t>(base);
  for (auto& r : s.ranges()) parts.add(kj::str((r.first - b) / P, "-", (r.second - b) / P));
  return kj::strArray(parts, " ");
}

TEST_CASE("the tracker reports what the process, the kernel and no child wrote") {
  int uffd = control::makeWriteTrackingUffd();
  // This kernel (6.7 or later, without privilege) must give us one: pre-copy rests on it.
  REQUIRE_MESSAGE(uffd >= 0, "no userfaultfd with WP_ASYNC: ", strerror(-uffd));
  DirtyPageTracker tracker(getpid(), uffd);

  constexpr size_t kPages = 32;
  auto* mem = static_cast<char*>(mmap(nullptr, kPages * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  REQUIRE(mem != MAP_FAILED);
  memset(mem, 1, 16 * P);
  MappedRegion regions[] = {anonRegion(mem, kPages * P)};

  PageRangeSet written, untracked;
  tracker.collect(regions, written, untracked);
  CHECK(pagesOf(written, mem) == "0-32");  // new to the tracker: all of it
  CHECK(untracked.empty());

  written.clear();
  tracker.collect(regions, written, untracked);
  CHECK(written.empty());

  SUBCASE("writes by the process itself") {
    mem[3 * P] = 2;
    mem[20 * P + 7] = 2;  // a page never touched before
    tracker.collect(regions, written, untracked);
    CHECK(pagesOf(written, mem) == "3-4 20-21");
  }
  SUBCASE("read() into a protected buffer works and counts as written") {
    int p[2];
    REQUIRE(pipe(p) == 0);
    REQUIRE(write(p[1], "hello", 5) == 5);
    CHECK(read(p[0], mem + 5 * P + 100, 5) == 5);  // the kernel's write must not fail
    CHECK(memcmp(mem + 5 * P + 100, "hello", 5) == 0);
    REQUIRE(write(p[1], mem + 5 * P + 100, 5) == 5);  // and writes from it too
    char back[5];
    CHECK(read(p[0], back, 5) == 5);
    close(p[0]);
    close(p[1]);
    tracker.collect(regions, written, untracked);
    CHECK(pagesOf(written, mem) == "5-6");
  }
  SUBCASE("a forked child writes freely and untracked") {
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      mem[7 * P] = 9;
      mem[25 * P] = 9;
      _exit(mem[7 * P] == 9 && mem[1 * P] == 1 ? 0 : 3);
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    tracker.collect(regions, written, untracked);
    CHECK(written.empty());  // the child's writes are its own copy
    CHECK(mem[7 * P] == 1);
    mem[8 * P] = 4;  // and the parent is still tracked after the fork
    tracker.collect(regions, written, untracked);
    CHECK(pagesOf(written, mem) == "8-9");
  }
  SUBCASE("a region mapped again at the same place counts as written whole") {
    void* again = mmap(mem + 8 * P, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    REQUIRE(again == mem + 8 * P);
    MappedRegion now[] = {anonRegion(mem, 8 * P), anonRegion(mem + 8 * P, 4 * P), anonRegion(mem + 12 * P, 20 * P)};
    tracker.collect(now, written, untracked);
    CHECK(pagesOf(written, mem) == "8-12");
    written.clear();
    mem[9 * P] = 5;
    tracker.collect(now, written, untracked);
    CHECK(pagesOf(written, mem) == "9-10");
  }
  SUBCASE("a page dropped with MADV_DONTNEED and read again counts as written") {
    // Its contents changed (to zeros) without a write: the tracker must still say so,
    // or pre-copy would keep the old copy.
    REQUIRE(madvise(mem + 2 * P, P, MADV_DONTNEED) == 0);
    CHECK(mem[2 * P] == 0);
    tracker.collect(regions, written, untracked);
    CHECK(pagesOf(written, mem) == "2-3");
  }
  SUBCASE("shared memory is left untracked") {
    void* shared = mmap(nullptr, 2 * P, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(shared != MAP_FAILED);
    MappedRegion r = anonRegion(shared, 2 * P);
    r.flags = MAP_SHARED;
    MappedRegion both[] = {anonRegion(mem, kPages * P), kj::mv(r)};
    tracker.collect(both, written, untracked);
    CHECK(written.empty());
    CHECK(untracked.pages() == 2);
    munmap(shared, 2 * P);
  }
  munmap(mem, kPages * P);
}

// The test's own memory seen through /proc, limited to one range.
class RangeSource final : public PageSource {
 public:
  RangeSource(uint64_t start, uint64_t end) : proc_(getpid(), /*forMigration=*/true), start_(start), end_(end) {}
  kj::Array<MappedRegion> regions() override {
    kj::Vector<MappedRegion> out;
    for (auto& r : proc_.regions()) {
      if (r.start >= start_ && r.end <= end_) out.add(kj::mv(r));
    }
    return out.releaseAsArray();
  }
  void pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) override { proc_.pagesToSave(r, out); }
  void read(uint64_t addr, void* buf, size_t len) override { proc_.read(addr, buf, len); }

 private:
  ProcPageSource proc_;
  uint64_t start_, end_;
};

TEST_CASE("pre-copy keeps no page of a data file mapping whose file page shows through again") {
  image::testing::TempDir dir;
  std::string data(4 * P, 'F');
  auto path = dir.write("data.bin", kj::arrayPtr(reinterpret_cast<const kj::byte*>(data.data()), data.size()));
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  auto* map = static_cast<char*>(mmap(nullptr, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
  close(fd);
  REQUIRE(map != MAP_FAILED);
  map[1 * P] = 'W';  // a private copy of page 1
  uint64_t start = reinterpret_cast<uint64_t>(map);

  int uffd = control::makeWriteTrackingUffd();
  REQUIRE(uffd >= 0);
  RangeSource source(start, start + 4 * P);
  Precopy precopy(getpid(), uffd, source);
  image::MemorySink sink;
  capnp::MallocMessageBuilder header;
  image::fillHeader(header.initRoot<image::schema::Header>(), 0, 1, "test");
  image::ImageWriter w(sink, header);
  precopy.runRounds(w, PrecopyRule{}, [] {});
  CHECK(precopy.stats().pagesSent == 4);  // the file's pages are not zero: saved whole
  CHECK(pagesOf(precopy.held(), map) == "0-4");

  REQUIRE(madvise(map + 1 * P, P, MADV_DONTNEED) == 0);  // page 1 is the file's again
  CHECK(map[1 * P] == 'F');
  map[2 * P] = 'X';  // and page 2 written
  precopy.finalScan();
  CHECK(pagesOf(precopy.held(), map) == "0-1 3-4");
  munmap(map, 4 * P);
}

TEST_CASE("a pre-copy round of 1 MiB or more carries one checksum per page (a lazy restore checks pages by them)") {
  constexpr uint64_t n = 300;  // over 1 MiB
  // A data file's private mapping, saved whole (as the test above): its pages are the
  // round's whatever the write tracking sees (an ASan build's saw no anonymous page).
  image::testing::TempDir files;
  std::string data(n * P, '\0');
  for (uint64_t i = 0; i < n; ++i) memset(&data[i * P], static_cast<int>(i + 1), P);
  auto path = files.write("data.bin", kj::arrayPtr(reinterpret_cast<const kj::byte*>(data.data()), data.size()));
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  auto* map = static_cast<char*>(mmap(nullptr, n * P, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
  close(fd);
  REQUIRE(map != MAP_FAILED);
  uint64_t start = reinterpret_cast<uint64_t>(map);
  int uffd = control::makeWriteTrackingUffd();
  REQUIRE(uffd >= 0);
  RangeSource source(start, start + n * P);
  Precopy precopy(getpid(), uffd, source);
  image::MemorySink sink;
  capnp::MallocMessageBuilder header;
  image::fillHeader(header.initRoot<image::schema::Header>(), 0, 1, "test");
  image::ImageWriter w(sink, header);
  precopy.runRounds(w, PrecopyRule{}, [] {});
  w.finish();
  image::testing::TempDir dir;
  image::FileReader img(dir.write("round.img", sink.bytes()).c_str());
  size_t pages = img.sectionCount();
  for (size_t i = 0; i < img.sectionCount(); ++i) {
    if (img.section(i).type == static_cast<uint16_t>(image::SectionType::pages)) pages = i;
  }
  const uint64_t sent = precopy.stats().pagesSent;
  REQUIRE(sent * P >= (1u << 20));
  REQUIRE(pages + 1 < img.sectionCount());
  REQUIRE(img.section(pages).dataLen == sent * P);
  REQUIRE(img.section(pages + 1).type == static_cast<uint16_t>(image::SectionType::pageSums));
  REQUIRE(img.section(pages + 1).dataLen == sent * sizeof(uint64_t));
  std::vector<uint64_t> sums(sent);
  img.readData(pages + 1, 0, sums.data(), sent * sizeof(uint64_t));
  std::vector<char> page(P);
  for (uint64_t i = 0; i < sent; ++i) {
    img.readData(pages, i * P, page.data(), P);
    CHECK(sums[i] == image::checksum(page.data(), P));
  }
  munmap(map, n * P);
}

TEST_CASE("a tree's pre-copies go round by round together, the rule on the tree's sums") {
  // Two members: two regions of this process, each tracked by a userfaultfd of its own.
  // Inaccessible pages around and between them keep the kernel from merging them
  // with each other or a neighbour into one region.
  constexpr size_t kPages = 64, kAll = 2 * kPages + 3;
  auto* block = static_cast<char*>(mmap(nullptr, kAll * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  REQUIRE(block != MAP_FAILED);
  char* mem[2] = {block + P, block + (kPages + 2) * P};
  for (size_t guard : {size_t{0}, kPages + 1, kAll - 1}) REQUIRE(mprotect(block + guard * P, P, PROT_NONE) == 0);
  for (auto& m : mem) memset(m, 7, kPages * P);
  int uffd[2] = {control::makeWriteTrackingUffd(), control::makeWriteTrackingUffd()};
  REQUIRE(uffd[0] >= 0);
  REQUIRE(uffd[1] >= 0);
  auto at = [&](int i) { return reinterpret_cast<uint64_t>(mem[i]); };
  RangeSource source0(at(0), at(0) + kPages * P), source1(at(1), at(1) + kPages * P);
  Precopy first(getpid(), uffd[0], source0), second(getpid(), uffd[1], source1);
  image::MemorySink sink0, sink1;
  capnp::MallocMessageBuilder header;
  image::fillHeader(header.initRoot<image::schema::Header>(), 0, 1, "test");
  image::ImageWriter w0(sink0, header), w1(sink1, header);
  PrecopyMember members[] = {{first, w0}, {second, w1}};

  // Round 1 sends both whole (128 pages, more than `small`). Then 3 pages of the first
  // and 2 of the second are written: each alone would be small (at most 4) and stop the
  // rounds, the tree's 5 are not, so round 3 comes, which finds nothing written.
  PrecopyRule rule;
  rule.smallPages = 4;
  kj::Vector<kj::String> calls;
  uint32_t rounds = runRoundsTogether(members, rule, [&](size_t i) {
    calls.add(kj::str(i));
    if (calls.size() == 2) {
      memset(mem[0] + 10 * P, 1, 3 * P);
      memset(mem[1] + 30 * P, 1, 2 * P);
    }
    if (calls.size() == 6) mem[1][40 * P] = 2;  // after the last round: the freeze's
  });
  CHECK(kj::strArray(calls, " ") == "0 1 0 1 0 1");  // member by member, round by round
  CHECK(rounds == 3);
  CHECK(first.stats().rounds == 3);
  CHECK(first.stats().pagesSent == kPages + 3);
  CHECK(second.stats().pagesSent == kPages + 2);
  // What each holds for its freeze: all but what was written after its last round.
  first.finalScan();
  second.finalScan();
  CHECK(first.held().pages() == kPages);
  CHECK(pagesOf(second.held(), mem[1]) == "0-40 41-64");
  munmap(block, kAll * P);
}

TEST_CASE("a child that ends during a tree's rounds leaves them; the root's end stops them") {
  // Each member's userfaultfd is this process's, so each tracks a region of its own,
  // a guard page between them.
  constexpr size_t kPages = 8, kAll = 2 * kPages + 1;
  auto* mem = static_cast<char*>(mmap(nullptr, kAll * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  REQUIRE(mem != MAP_FAILED);
  REQUIRE(mprotect(mem + kPages * P, P, PROT_NONE) == 0);
  memset(mem, 7, kPages * P);
  auto at = reinterpret_cast<uint64_t>(mem);
  RangeSource source(at, at + kPages * P), childSource(at + (kPages + 1) * P, at + kAll * P);
  capnp::MallocMessageBuilder header;
  image::fillHeader(header.initRoot<image::schema::Header>(), 0, 1, "test");
  for (bool childMayEnd : {true, false}) {
    CAPTURE(childMayEnd);
    // The second member is a child that has ended (and been reaped) by the first round.
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      pause();
      _exit(0);
    }
    int uffd[2] = {control::makeWriteTrackingUffd(), control::makeWriteTrackingUffd()};
    REQUIRE(uffd[0] >= 0);
    REQUIRE(uffd[1] >= 0);
    Precopy root(getpid(), uffd[0], source), ended(child, uffd[1], childSource);
    kill(child, SIGKILL);
    REQUIRE(waitpid(child, nullptr, 0) == child);
    image::MemorySink sink0, sink1;
    image::ImageWriter w0(sink0, header), w1(sink1, header);
    PrecopyMember members[] = {{root, w0, getpid(), false}, {ended, w1, child, childMayEnd}};
    kj::Vector<size_t> calls;
    auto run = [&]() { return runRoundsTogether(members, PrecopyRule{}, [&](size_t i) { calls.add(i); }); };
    if (childMayEnd) {
      CHECK(run() >= 1);
      CHECK(members[1].ended);
      for (size_t i : calls) CHECK(i == 0);  // only the root went round
      CHECK(root.stats().pagesSent == kPages);
    } else {
      CHECK_THROWS_WITH(run(), doctest::Contains("ended during the pre-copy"));
    }
  }
  munmap(mem, kAll * P);
}

}  // namespace
}  // namespace mig::resources
