// The restore plan derived from an image, and the freestanding validator the
// restorer runs on it.
#include "image/file_reader.h"
#include "image/host_facts.h"
#include "image/image_test_util.h"
#include "image/plan_builder.h"
#include "image/plan_check.h"
#include "image/sample_image.h"
#include "image/section_check.h"
#include "image/writer.h"

#include <climits>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>
#include <sys/mman.h>
#include <unistd.h>

namespace mig::image {
namespace {

using testing::contains;
using testing::errorOf;
using testing::TempDir;

TEST_CASE("a plan lists regions, page sources and threads of the image") {
  TempDir dir;
  auto path = dir.write("a.img", makeSampleImage());
  FileReader f(path.c_str());
  RestorePlan p = buildRestorePlan(f);
  const plan::Header& h = p.header();
  REQUIRE(plan::validate(&h, p.bytes().size()) == nullptr);
  CHECK(h.regionCount == 4);
  CHECK(h.pagesCount == 3);
  CHECK(h.threadCount == 2);
  char real[PATH_MAX];
  REQUIRE(realpath(path.c_str(), real) != nullptr);
  CHECK(std::string(plan::string(&h, h.imagePath)) == real);

  const plan::Region* r = plan::regions(&h);
  CHECK(r[3].source == plan::kSourceFile);
  CHECK(std::string(plan::string(&h, r[3].path)) == "/usr/bin/true");
  CHECK(r[0].source == plan::kSourceZero);

  const plan::Pages* pg = plan::pages(&h);
  CHECK(pg[0].method == plan::kPagesCopy);  // never mapped from the image (restore_plan.h)
  CHECK(pg[1].method == plan::kPagesCopy);
  // Each page source points at the page's bytes in the file.
  for (uint32_t i = 0; i < h.pagesCount; ++i) {
    kj::byte page[kPageSize];
    REQUIRE(pread(f.fd(), page, sizeof(page), static_cast<off_t>(pg[i].imageOffset)) == sizeof(page));
    CHECK(page[100] == samplePageByte(pg[i].addr, 100));
    CHECK(pg[i].region == i);
  }

  const plan::Thread* t = plan::threads(&h);
  CHECK(t[0].flags == plan::kThreadMain);
  CHECK(t[1].flags == 0);
  CHECK(t[1].vtid == 1235);
  CHECK(t[1].sigframeLen == 65);
  CHECK(static_cast<const kj::byte*>(plan::blob(&h, t[1].sigframe))[3] == 4);
  // A pending signal saved with its siginfo is queued from that; one without, from
  // the mask.
  CHECK(t[1].pendingMask == 1ull << (10 - 1));
  REQUIRE(h.pendingCount == 1);
  const plan::PendingSignal& ps = plan::pendingSignals(&h)[0];
  CHECK(ps.thread == 1);
  int32_t signo = 0, value = 0;
  memcpy(&signo, ps.info, sizeof(signo));
  memcpy(&value, ps.info + 24, sizeof(value));
  CHECK(signo == 34);
  CHECK(value == 11);
}

TEST_CASE("pages outside every mapped region make the plan fail with the address") {
  TempDir dir;
  // An image whose pages have no memory map around them.
  MemorySink sink;
  {
    capnp::MallocMessageBuilder header;
    fillHeader(header.initRoot<schema::Header>(), 1, 1, "x");
    ImageWriter w(sink, header);
    kj::byte page[kPageSize] = {};
    writeOneRun(w, SectionType::pages, 0x5000, 1, page, sizeof(page));
    capnp::MallocMessageBuilder th;
    th.initRoot<schema::Threads>().initThreads(1)[0].setVtid(7);
    w.section(SectionType::threads, th);
    w.finish();
  }
  FileReader f(dir.write("b.img", sink.bytes()).c_str());
  auto e = errorOf([&] { buildRestorePlan(f); });
  CHECK(contains(e, "section 1 (pages)"));
  CHECK(contains(e, "5000 lies outside every mapped region"));
}

// A pre-copy image: pages 0-4 of a region sent in round 1 (byte 'A'), page 1 again in
// round 2 ('B'), then frozen: page 3 sent again ('C'), pages 0-2 kept, page 4 dropped.
kj::Array<kj::byte> precopyImage(bool keepUnsent) {
  constexpr uint64_t base = 0x10000;
  MemorySink sink;
  capnp::MallocMessageBuilder header;
  fillHeader(header.initRoot<schema::Header>(), 1, 1, "x");
  ImageWriter w(sink, header);
  auto pages = [&](uint32_t round, uint64_t first, uint32_t n, char fill) {
    capnp::MallocMessageBuilder meta;
    auto m = meta.initRoot<schema::Pages>();
    m.setPrecopyRound(round);
    auto runs = m.initRuns(1);
    runs[0].setAddr(base + first * kPageSize);
    runs[0].setPages(n);
    std::vector<kj::byte> data(n * kPageSize, static_cast<kj::byte>(fill));
    w.beginData(SectionType::pages, meta, data.size());
    w.data(data.data(), data.size());
    w.endData();
  };
  pages(1, 0, 5, 'A');
  pages(2, 1, 1, 'B');
  capnp::MallocMessageBuilder map;
  auto r = map.initRoot<schema::MemoryMap>().initRegions(1)[0];
  r.setStart(base);
  r.setEnd(base + 8 * kPageSize);
  r.setProt(PROT_READ | PROT_WRITE);
  r.setFlags(MAP_PRIVATE);
  r.setKind(schema::MemoryRegion::Kind::ANONYMOUS);
  w.section(SectionType::memoryMap, map);
  pages(0, 3, 1, 'C');
  capnp::MallocMessageBuilder kept;
  auto runs = kept.initRoot<schema::Pages>().initRuns(1);
  runs[0].setAddr(base + (keepUnsent ? 5 : 0) * kPageSize);
  runs[0].setPages(3);
  w.section(SectionType::keptPages, kept);
  capnp::MallocMessageBuilder th;
  th.initRoot<schema::Threads>().initThreads(1)[0].setVtid(7);
  w.section(SectionType::threads, th);
  w.finish();
  return sink.release();
}

TEST_CASE("a pre-copy image restores each page from its latest copy, dropped pages not at all") {
  TempDir dir;
  FileReader f(dir.write("p.img", precopyImage(false)).c_str());
  f.verifyAll();
  RestorePlan p = buildRestorePlan(f);
  const plan::Header& h = p.header();
  REQUIRE(plan::validate(&h, p.bytes().size()) == nullptr);
  // What the restorer does: each piece in plan order over the ones before.
  char memory[8] = {};
  const plan::Pages* pg = plan::pages(&h);
  for (uint32_t i = 0; i < h.pagesCount; ++i) {
    for (uint64_t off = 0; off < pg[i].len; off += kPageSize) {
      char c = 0;
      REQUIRE(pread(f.fd(), &c, 1, static_cast<off_t>(pg[i].imageOffset + off)) == 1);
      memory[(pg[i].addr + off - 0x10000) / kPageSize] = c;
    }
  }
  CHECK(std::string(memory, 8) == std::string("ABAC\0\0\0\0", 8));
  // Round 1's run stays one piece, and the pages that go over it come after it.
  REQUIRE(h.pagesCount == 3);
  CHECK(pg[0].len == 4 * kPageSize);
  for (uint32_t i = 0; i < h.pagesCount; ++i) CHECK(pg[i].method == plan::kPagesCopy);
}

TEST_CASE("kept pages that no pre-copy round sent make the plan fail") {
  TempDir dir;
  FileReader f(dir.write("q.img", precopyImage(true)).c_str());
  auto e = errorOf([&] { buildRestorePlan(f); });
  CHECK(contains(e, "kept pages at 15000 were not sent before the freeze"));
}

// An image of two threads (kernel TIDs 300 and 301) whose process has `timers`
// (id, signalled thread's TID or 0).
kj::Array<kj::byte> timersImage(std::initializer_list<std::pair<int32_t, int32_t>> timers) {
  MemorySink sink;
  capnp::MallocMessageBuilder header;
  fillHeader(header.initRoot<schema::Header>(), 1, 1, "x");
  ImageWriter w(sink, header);
  capnp::MallocMessageBuilder th;
  auto threads = th.initRoot<schema::Threads>().initThreads(2);
  for (uint32_t i = 0; i < 2; ++i) {
    threads[i].setVtid(static_cast<int32_t>(7 + i));
    threads[i].setRealTid(static_cast<int32_t>(300 + i));
  }
  w.section(SectionType::threads, th);
  capnp::MallocMessageBuilder pm;
  auto list = pm.initRoot<schema::Process>().initPosixTimers(static_cast<uint32_t>(timers.size()));
  uint32_t i = 0;
  for (auto [id, tid] : timers) {
    auto t = list[i++];
    t.setId(id);
    t.setClock(1);
    t.setSigno(34);
    t.setValue(0x1000u + static_cast<uint32_t>(id));
    t.setNotify(tid != 0 ? 4 : 0);  // SIGEV_THREAD_ID : SIGEV_SIGNAL
    t.setThread(tid);
    t.initTimer().setValueNs(1500000000);
    t.getTimer().setIntervalNs(id == 2 ? 50000000 : 0);
  }
  w.section(SectionType::process, pm);
  w.finish();
  return sink.release();
}

TEST_CASE("POSIX timers go into the plan by id, a thread's timer naming the thread's index") {
  TempDir dir;
  FileReader f(dir.write("t.img", timersImage({{5, 301}, {2, 0}})).c_str());
  RestorePlan p = buildRestorePlan(f);
  const plan::Header& h = p.header();
  REQUIRE(plan::validate(&h, p.bytes().size()) == nullptr);
  REQUIRE(h.timerCount == 2);
  const plan::PosixTimer* t = plan::posixTimers(&h);
  CHECK(t[0].id == 2);  // counting ids up (kernels without PR_TIMER_CREATE_RESTORE_IDS) needs them sorted
  CHECK(t[0].thread == -1);
  CHECK(t[0].intervalNs == 50000000);
  CHECK(t[1].id == 5);
  CHECK(t[1].notify == plan::kSigevThreadId);
  CHECK(t[1].thread == 1);
  CHECK(t[1].value == 0x1005);
  CHECK(t[1].valueNs == 1500000000);

  FileReader g(dir.write("u.img", timersImage({{3, 999}})).c_str());
  CHECK(contains(errorOf([&] { buildRestorePlan(g); }), "POSIX timer 3 signals thread 999, which the image does not have"));
}

// Copies a valid plan so a test can corrupt one field.
struct PlanCopy {
  std::vector<uint64_t> words;
  plan::Header* h() { return reinterpret_cast<plan::Header*>(words.data()); }
  uint64_t size() { return h()->totalSize; }
};

PlanCopy validPlan(const TempDir& dir) {
  FileReader f(dir.write("p.img", makeSampleImage()).c_str());
  RestorePlan p = buildRestorePlan(f);
  PlanCopy c;
  c.words.resize(p.bytes().size() / 8);
  memcpy(c.words.data(), p.bytes().begin(), p.bytes().size());
  return c;
}

TEST_CASE("the plan validator refuses every kind of corrupt plan") {
  TempDir dir;
  struct Case {
    const char* expect;
    void (*edit)(plan::Header*);
  };
  const Case cases[] = {
      {"wrong magic", [](plan::Header* h) { h->magic ^= 1; }},
      {"version", [](plan::Header* h) { h->version = 9; }},
      {"regions out of bounds", [](plan::Header* h) { h->regionCount = 0x7fffffff; }},
      {"regions out of bounds", [](plan::Header* h) { h->regions = h->totalSize - 8; }},
      {"pages out of bounds", [](plan::Header* h) { h->pages = ~0ull - 7; }},
      {"threads out of bounds", [](plan::Header* h) { h->threadCount += 1000; }},
      {"strings out of bounds", [](plan::Header* h) { h->stringsSize = ~0ull; }},
      {"names no image", [](plan::Header* h) { h->imagePath = plan::kNoString; }},
      {"not page aligned", [](plan::Header* h) { const_cast<plan::Region*>(plan::regions(h))[0].start += 1; }},
      {"overlap", [](plan::Header* h) { const_cast<plan::Region*>(plan::regions(h))[1].start = plan::regions(h)[0].start; }},
      {"outside their region", [](plan::Header* h) { const_cast<plan::Pages*>(plan::pages(h))[0].len = 1ull << 40; }},
      {"missing region", [](plan::Header* h) { const_cast<plan::Pages*>(plan::pages(h))[0].region = 99; }},
      {"frame out of bounds", [](plan::Header* h) { const_cast<plan::Thread*>(plan::threads(h))[0].sigframeLen = 1 << 30; }},
      {"exactly one main thread", [](plan::Header* h) { const_cast<plan::Thread*>(plan::threads(h))[1].flags = plan::kThreadMain; }},
      {"pending signals out of bounds", [](plan::Header* h) { h->pendingCount = 100000; }},
      {"pending signal has a bad number", [](plan::Header* h) {
         const_cast<plan::PendingSignal*>(plan::pendingSignals(h))[0].info[0] = 65; }},
      {"pending signal names a missing thread", [](plan::Header* h) {
         const_cast<plan::PendingSignal*>(plan::pendingSignals(h))[0].thread = 2; }},
      {"path out of bounds", [](plan::Header* h) { const_cast<plan::Region*>(plan::regions(h))[3].path = 1u << 30; }},
      {"POSIX timers out of bounds", [](plan::Header* h) { h->timerCount = 5000; }},
      {"POSIX timers out of bounds", [](plan::Header* h) { h->timerCount = 1; h->timers = h->totalSize; }},
  };
  for (const Case& c : cases) {
    PlanCopy p = validPlan(dir);
    REQUIRE(plan::validate(p.h(), p.size()) == nullptr);
    c.edit(p.h());
    const char* why = plan::validate(p.h(), p.size());
    INFO("expecting: " << c.expect);
    REQUIRE(why != nullptr);
    CHECK(contains(why, c.expect));
  }
  PlanCopy p = validPlan(dir);
  CHECK(plan::validate(p.h(), p.size() - 8) != nullptr);
  CHECK(plan::validate(p.h(), 16) != nullptr);
}

TEST_CASE("the plan validator refuses a POSIX timer with a negative time, a bad signal or a missing thread") {
  TempDir dir;
  FileReader f(dir.write("t.img", timersImage({{5, 301}})).c_str());
  RestorePlan good = buildRestorePlan(f);
  struct Case {
    const char* expect;
    void (*edit)(plan::PosixTimer&);
  };
  const Case cases[] = {
      {"negative id or time", [](plan::PosixTimer& t) { t.valueNs = -1; }},
      {"negative id or time", [](plan::PosixTimer& t) { t.id = -1; }},
      {"bad signal", [](plan::PosixTimer& t) { t.signo = 65; }},
      {"names a missing thread", [](plan::PosixTimer& t) { t.thread = 2; }},
  };
  for (const Case& c : cases) {
    PlanCopy p;
    p.words.resize(good.bytes().size() / 8);
    memcpy(p.words.data(), good.bytes().begin(), good.bytes().size());
    c.edit(const_cast<plan::PosixTimer*>(plan::posixTimers(p.h()))[0]);
    const char* why = plan::validate(p.h(), p.size());
    INFO("expecting: " << c.expect);
    REQUIRE(why != nullptr);
    CHECK(contains(why, c.expect));
  }
}

TEST_CASE("an unterminated string in the plan is refused") {
  TempDir dir;
  PlanCopy p = validPlan(dir);
  plan::Header* h = p.h();
  char* strings = reinterpret_cast<char*>(h) + h->strings;
  memset(strings, 'x', h->stringsSize);
  CHECK(plan::validate(h, p.size()) != nullptr);
}


// A sparse pages section (format version 3): two extents, one across the border of two
// regions, become copies of exactly those bytes from exactly their image offsets.
kj::Array<kj::byte> sparseImage(uint64_t secondExtentAddr) {
  constexpr uint64_t base = 0x20000;
  MemorySink sink;
  capnp::MallocMessageBuilder header;
  fillHeader(header.initRoot<schema::Header>(), 1, 1, "x");
  ImageWriter w(sink, header);
  capnp::MallocMessageBuilder map;
  auto regions = map.initRoot<schema::MemoryMap>().initRegions(2);
  for (unsigned i = 0; i < 2; ++i) {
    regions[i].setStart(base + i * 2 * kPageSize);
    regions[i].setEnd(base + (i + 1) * 2 * kPageSize);
    regions[i].setProt(PROT_READ | PROT_WRITE);
    regions[i].setFlags(MAP_PRIVATE);
    regions[i].setKind(schema::MemoryRegion::Kind::ANONYMOUS);
  }
  w.section(SectionType::memoryMap, map);
  capnp::MallocMessageBuilder meta;
  auto m = meta.initRoot<schema::Pages>();
  auto runs = m.initRuns(1);
  runs[0].setAddr(base);
  runs[0].setPages(4);
  auto extents = m.initExtents(2);
  extents[0].setAddr(base + 16);
  extents[0].setLen(24);
  extents[1].setAddr(secondExtentAddr);
  extents[1].setLen(64);
  std::vector<kj::byte> data(24 + 64, 'S');
  w.beginData(SectionType::sparsePages, meta, data.size());
  w.data(data.data(), data.size());
  w.endData();
  capnp::MallocMessageBuilder th;
  th.initRoot<schema::Threads>().initThreads(1)[0].setVtid(7);
  w.section(SectionType::threads, th);
  w.finish();
  return kj::heapArray<kj::byte>(sink.bytes());
}

TEST_CASE("sparse pages become byte copies, split at region borders") {
  TempDir dir;
  auto bytes = sparseImage(0x20000 + 2 * kPageSize - 32);
  FileReader f(dir.write("s.img", bytes).c_str());
  RestorePlan p = buildRestorePlan(f);
  const plan::Header& h = p.header();
  REQUIRE(h.pagesCount == 3);
  const plan::Pages* pg = plan::pages(&h);
  uint64_t data = 0;
  for (size_t i = 0; i < f.sectionCount(); ++i) {
    if (f.section(i).type == static_cast<uint16_t>(SectionType::sparsePages)) data = f.section(i).layout.dataOffset;
  }
  REQUIRE(data != 0);
  CHECK(pg[0].addr == 0x20000 + 16);
  CHECK(pg[0].len == 24);
  CHECK(pg[0].imageOffset == data);
  CHECK(pg[0].method == plan::kPagesCopy);
  CHECK(pg[1].addr == 0x20000 + 2 * kPageSize - 32);
  CHECK(pg[1].len == 32);
  CHECK(pg[1].region == 0);
  CHECK(pg[1].imageOffset == data + 24);
  CHECK(pg[2].addr == 0x20000 + 2 * kPageSize);
  CHECK(pg[2].len == 32);
  CHECK(pg[2].region == 1);
  CHECK(pg[2].imageOffset == data + 56);
  CHECK(bytes[data + 56] == 'S');
}

TEST_CASE("a sparse extent outside its section's pages is refused, naming it") {
  TempDir dir;
  auto bytes = sparseImage(0x20000 + 4 * kPageSize);
  auto e = errorOf([&] { FileReader f(dir.write("s.img", bytes).c_str()); });
  CHECK(contains(e, "sparse-pages"));
  CHECK(contains(e, "lies outside the section's page runs"));
}

}  // namespace
}  // namespace mig::image
