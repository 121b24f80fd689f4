// Round trips of the image format: what the writer writes, both readers give back,
// through memory, a socket (no seeking) and a file.
#include "image/file_reader.h"
#include "image/host_facts.h"
#include "image/image_test_util.h"
#include "image/sample_image.h"
#include "image/section_check.h"
#include "image/stream_reader.h"
#include "image/writer.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <thread>

namespace mig::image {
namespace {

using testing::TempDir;

// Reads a whole image through a StreamReader and checks every page against the pattern.
void checkSampleStream(ByteSource& src, const SampleOptions& o) {
  StreamReader r(src);
  CHECK(r.header().getJobId() == 42);
  CHECK(r.header().getVpid() == 1234);
  CHECK(r.header().getArch() == "x86_64");
  int seen = 0;
  uint64_t pageBytes = 0;
  while (const SectionInfo* s = r.next()) {
    ++seen;
    if (s->type == static_cast<uint16_t>(SectionType::pages)) {
      CHECK(s->layout.dataOffset % kDataAlign == 0);
      for (auto run : r.meta<schema::Pages>().getRuns()) {
        for (uint32_t p = 0; p < run.getPages(); ++p) {
          kj::byte page[kPageSize];
          REQUIRE(r.readData(page, sizeof(page)) == sizeof(page));
          uint64_t addr = run.getAddr() + p * kPageSize;
          for (uint64_t b = 0; b < kPageSize; ++b) REQUIRE(page[b] == samplePageByte(addr, b));
          pageBytes += kPageSize;
        }
      }
      kj::byte extra;
      CHECK(r.readData(&extra, 1) == 0);
    }
    if (s->type == static_cast<uint16_t>(SectionType::threads)) {
      CHECK(r.meta<schema::Threads>().getThreads().size() == o.threads);
    }
  }
  CHECK(seen == 3);  // memory map, pages, threads
  CHECK(pageBytes == (o.pageRuns * (o.pageRuns + 1) / 2) * kPageSize);
  CHECK(r.next() == nullptr);
}

TEST_CASE("an image read back from memory gives every section and page") {
  SampleOptions o;
  auto bytes = makeSampleImage(o);
  MemorySource src(bytes);
  checkSampleStream(src, o);
}

TEST_CASE("a stream reader skips unread data but still checks it") {
  auto bytes = makeSampleImage();
  MemorySource src(bytes);
  StreamReader r(src);
  int n = 0;
  while (r.next() != nullptr) ++n;
  CHECK(n == 3);
}

TEST_CASE("an image streams through a socket without seeking") {
  SampleOptions o;
  o.pageRuns = 40;  // ~3 MiB, more than a socket buffer holds
  auto bytes = makeSampleImage(o);
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  std::thread writer([&] {
    FdSink sink(sv[0], "socket");
    sink.write(bytes.begin(), bytes.size());
    ::close(sv[0]);
  });
  FdSource src(sv[1], "socket");
  checkSampleStream(src, o);
  writer.join();
  ::close(sv[1]);
}

TEST_CASE("the file reader indexes sections and reads page data at random") {
  TempDir dir;
  auto path = dir.write("a.img", makeSampleImage());
  FileReader f(path.c_str());
  REQUIRE(f.sectionCount() == 5);
  CHECK(f.section(0).type == static_cast<uint16_t>(SectionType::header));
  CHECK(f.section(4).type == static_cast<uint16_t>(SectionType::end));
  CHECK(f.header().getCommand() == "sample");
  const SectionInfo& pages = f.section(2);
  CHECK(pages.type == static_cast<uint16_t>(SectionType::pages));
  CHECK(f.firstSection(SectionType::pages) == size_t(2));
  CHECK(f.firstSection(SectionType::end) == size_t(4));
  CHECK(f.firstSection(SectionType::parent) == nullptr);
  auto runs = f.meta<schema::Pages>(2).getRuns();
  // Second run's first page sits right after the first run's single page.
  kj::byte page[kPageSize];
  f.readData(2, kPageSize, page, sizeof(page));
  for (uint64_t b = 0; b < kPageSize; ++b) REQUIRE(page[b] == samplePageByte(runs[1].getAddr(), b));
  f.verifyAll();
}

TEST_CASE("page data can be mmap()ed straight from an image file") {
  TempDir dir;
  auto path = dir.write("a.img", makeSampleImage());
  FileReader f(path.c_str());
  const SectionInfo& pages = f.section(2);
  void* p = mmap(nullptr, pages.dataLen, PROT_READ, MAP_PRIVATE, f.fd(),
                 static_cast<off_t>(pages.layout.dataOffset));
  REQUIRE(p != MAP_FAILED);
  auto run0 = f.meta<schema::Pages>(2).getRuns()[0];
  CHECK(static_cast<kj::byte*>(p)[5] == samplePageByte(run0.getAddr(), 5));
  munmap(p, pages.dataLen);
}

TEST_CASE("unknown section types from a newer writer are skipped, still checksummed") {
  MemorySink sink;
  capnp::MallocMessageBuilder header;
  fillHeader(header.initRoot<schema::Header>(), 1, 1, "x");
  ImageWriter w(sink, header);
  capnp::MallocMessageBuilder future;
  future.initRoot<schema::End>().setSections(7);  // any struct will do as payload
  w.beginData(static_cast<SectionType>(77), future, 10);
  w.data("0123456789", 10);
  w.endData();
  w.finish();
  MemorySource src(sink.bytes());
  StreamReader r(src);
  const SectionInfo* s = r.next();
  REQUIRE(s != nullptr);
  CHECK(s->type == 77);
  CHECK(s->describe() == kj::str("section 1 (unknown type 77) at byte ", s->layout.frameOffset));
  CHECK(r.next() == nullptr);
}

TEST_CASE("the writer refuses data that does not match the announced length") {
  MemorySink sink;
  capnp::MallocMessageBuilder header;
  fillHeader(header.initRoot<schema::Header>(), 1, 1, "x");
  ImageWriter w(sink, header);
  capnp::MallocMessageBuilder meta;
  meta.initRoot<schema::Pages>();
  w.beginData(SectionType::pages, meta, 8);
  CHECK_THROWS(w.data("123456789", 9));
  w.data("1234", 4);
  CHECK_THROWS(w.endData());
}

TEST_CASE("sections held and written later make the same image as written at once") {
  // Two writers of the same sections, the second holding the middle one (a section
  // with data) until after the one before it: a tree's concurrent checkpoint.
  capnp::MallocMessageBuilder h, a, b, c;
  fillHeader(h.initRoot<schema::Header>(), 42, 1234, "job");
  a.initRoot<schema::Member>().setVpid(1);
  b.initRoot<schema::Member>().setVpid(2);
  c.initRoot<schema::Member>().setVpid(3);
  const char payload[] = "bytes of a deleted file, an odd length";
  auto withData = [&](ImageWriter& w) {
    w.beginData(SectionType::member, b, sizeof(payload));
    w.data(payload, 5);
    w.data(payload + 5, sizeof(payload) - 5);
    w.endData();
  };
  MemorySink direct, later;
  {
    ImageWriter w(direct, h);
    w.section(SectionType::member, a);
    withData(w);
    w.section(SectionType::member, c);
    w.finish();
  }
  {
    HeldSections held;
    ImageWriter keep(held);
    withData(keep);
    CHECK_THROWS(keep.finish());
    ImageWriter w(later, h);
    w.section(SectionType::member, a);
    w.write(held);
    w.section(SectionType::member, c);
    w.finish();
  }
  REQUIRE(direct.bytes().size() == later.bytes().size());
  CHECK(direct.bytes() == later.bytes());
}

}  // namespace
}  // namespace mig::image
