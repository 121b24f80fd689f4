// Bad images are the rule, not the exception: every truncation, every flipped
// byte, wrong magic or version, absurd lengths and foreign CPUs must give a precise
// one-line error naming the section, never a crash, a hang or a huge allocation.
#include "image/checksum.h"
#include "image/file_reader.h"
#include "image/host_facts.h"
#include "image/image_test_util.h"
#include "image/sample_image.h"
#include "image/section_check.h"
#include "image/stream_reader.h"
#include "image/writer.h"

#include <cstring>
#include <vector>

namespace mig::image {
namespace {

using testing::contains;
using testing::errorOf;
using testing::TempDir;

std::string streamError(kj::ArrayPtr<const kj::byte> bytes) {
  return errorOf([&] {
    MemorySource src(bytes);
    StreamReader r(src);
    while (r.next() != nullptr) {
    }
  });
}

std::string fileError(const TempDir& dir, kj::ArrayPtr<const kj::byte> bytes, bool verify) {
  auto path = dir.write("bad.img", bytes);
  return errorOf([&] {
    FileReader f(path.c_str());
    if (verify) f.verifyAll();
  });
}

// Section boundaries of a good image, by walking its frames.
std::vector<SectionInfo> sectionsOf(kj::ArrayPtr<const kj::byte> bytes) {
  TempDir dir;
  FileReader f(dir.write("good.img", bytes).c_str());
  std::vector<SectionInfo> out;
  for (size_t i = 0; i < f.sectionCount(); ++i) out.push_back(f.section(i));
  return out;
}

// Rewrites the frame of section `s` in place through `edit`, fixing its frame hash so
// that only the edited field is wrong.
template <typename F>
kj::Array<kj::byte> withFrame(kj::ArrayPtr<const kj::byte> good, const SectionInfo& s, F edit) {
  auto bytes = kj::heapArray(good);
  SectionFrame f;
  memcpy(&f, bytes.begin() + s.layout.frameOffset, sizeof(f));
  edit(f);
  f.frameHash = checksum(&f, offsetof(SectionFrame, frameHash));
  memcpy(bytes.begin() + s.layout.frameOffset, &f, sizeof(f));
  return bytes;
}

TEST_CASE("a cut at every byte is reported as truncation, by both readers") {
  auto good = makeSampleImage();
  auto sections = sectionsOf(good);
  TempDir dir;
  for (size_t cut = 0; cut < good.size(); ++cut) {
    auto prefix = good.slice(0, cut);
    std::string s = streamError(prefix);
    INFO("cut at byte " << cut << ": " << s);
    REQUIRE(contains(s, "truncated"));
    // The file reader is checked at every section boundary and in every part of a section.
    bool interesting = cut < 100;
    for (auto& sec : sections) {
      for (uint64_t at : {sec.layout.frameOffset, sec.layout.frameOffset + 20, sec.layout.metaOffset + 8,
                          sec.layout.dataOffset, sec.layout.dataOffset + 100, sec.layout.trailerOffset + 4}) {
        if (cut == at) interesting = true;
      }
    }
    if (interesting) {
      std::string f = fileError(dir, prefix, false);
      INFO("file reader: " << f);
      REQUIRE(contains(f, "truncated"));
    }
  }
}

TEST_CASE("truncation errors name the section that was cut") {
  auto good = makeSampleImage();
  auto sections = sectionsOf(good);
  const SectionInfo& pages = sections[2];
  auto s = streamError(good.slice(0, pages.layout.dataOffset + 5000));
  CHECK(contains(s, "section 2 (pages)"));
  CHECK(contains(s, "cut inside its data"));
  auto atBoundary = streamError(good.slice(0, sections[3].layout.frameOffset));
  CHECK(contains(atBoundary, "ends before section 3"));
  TempDir dir;
  auto f = fileError(dir, good.slice(0, pages.layout.dataOffset + 5000), false);
  CHECK(contains(f, "section 2 (pages)"));
}

TEST_CASE("every single flipped byte is detected by the stream reader and by verify") {
  auto good = makeSampleImage({.pageRuns = 2, .threads = 1, .fileRegion = true});
  TempDir dir;
  for (size_t i = 0; i < good.size(); ++i) {
    auto bad = kj::heapArray(good.asPtr());
    bad[i] ^= 0x20;
    std::string s = streamError(bad);
    INFO("flip at byte " << i << ": " << s);
    REQUIRE(!s.empty());
    if (i >= sizeof(Preamble)) REQUIRE(contains(s, "section "));
    if (i % 97 == 0) {  // the file reader reads the same checks; sample it to stay fast
      REQUIRE(!fileError(dir, bad, true).empty());
    }
  }
}

TEST_CASE("a corrupt page is found by verify and named") {
  auto good = makeSampleImage();
  auto sections = sectionsOf(good);
  auto bad = kj::heapArray(good.asPtr());
  bad[sections[2].layout.dataOffset + 4242] ^= 1;
  TempDir dir;
  CHECK(fileError(dir, bad, false).empty());  // indexing does not read page data
  auto e = fileError(dir, bad, true);
  CHECK(contains(e, "section 2 (pages)"));
  CHECK(contains(e, "data checksum mismatch"));
}

TEST_CASE("wrong magic, version and architecture are named") {
  auto good = makeSampleImage();
  auto bad = kj::heapArray(good.asPtr());
  bad[0] = 'X';
  CHECK(contains(streamError(bad), "not a mig image"));
  bad = kj::heapArray(good.asPtr());
  uint32_t v = 99;
  memcpy(bad.begin() + 8, &v, 4);
  CHECK(contains(streamError(bad), "format version 99 is not supported"));
  bad = kj::heapArray(good.asPtr());
  uint32_t aarch64 = 183;
  memcpy(bad.begin() + 12, &aarch64, 4);
  CHECK(contains(streamError(bad), "another architecture"));
  CHECK(contains(streamError(kj::ArrayPtr<const kj::byte>()), "truncated"));
  const char text[] = "hello, this is a text file and not an image at all";
  CHECK(contains(streamError(kj::arrayPtr(reinterpret_cast<const kj::byte*>(text), sizeof(text))),
                 "not a mig image"));
}

TEST_CASE("absurd length fields are refused before any allocation or long read") {
  auto good = makeSampleImage();
  auto sections = sectionsOf(good);
  TempDir dir;
  auto hugeMeta = withFrame(good, sections[1], [](SectionFrame& f) { f.metaLen = 0xfffffff8; });
  CHECK(contains(streamError(hugeMeta), "metadata length 4294967288 exceeds the limit"));
  CHECK(contains(fileError(dir, hugeMeta, false), "section 1 (memory-map)"));
  auto hugeData = withFrame(good, sections[2], [](SectionFrame& f) { f.dataLen = 1ull << 62; });
  CHECK(contains(streamError(hugeData), "exceeds the limit"));
  auto bigData = withFrame(good, sections[2], [](SectionFrame& f) { f.dataLen = 1ull << 36; });
  CHECK(contains(fileError(dir, bigData, false), "section 2 (pages)"));
  CHECK(contains(fileError(dir, bigData, false), "truncated"));
  auto oddMeta = withFrame(good, sections[1], [](SectionFrame& f) { f.metaLen = 13; });
  CHECK(contains(streamError(oddMeta), "not a positive multiple of 8"));
  auto renumbered = withFrame(good, sections[2], [](SectionFrame& f) { f.index = 5; });
  CHECK(contains(streamError(renumbered), "missing or repeated"));
}

TEST_CASE("metadata that contradicts the data is named with its section") {
  MemorySink sink;
  capnp::MallocMessageBuilder header;
  fillHeader(header.initRoot<schema::Header>(), 1, 1, "x");
  ImageWriter w(sink, header);
  kj::byte page[kPageSize] = {};
  writeOneRun(w, SectionType::pages, 0x10000, 2, page, sizeof(page));  // 8 KiB announced, 4 KiB present
  w.finish();
  auto e = streamError(sink.bytes());
  CHECK(contains(e, "section 1 (pages)"));
  CHECK(contains(e, "page runs add up to 8192 bytes but the section holds 4096"));
}

TEST_CASE("page sums that do not cover their runs are named with their section") {
  MemorySink sink;
  capnp::MallocMessageBuilder header;
  fillHeader(header.initRoot<schema::Header>(), 1, 1, "x");
  ImageWriter w(sink, header);
  uint64_t sums[1] = {};  // 2 pages need 16 bytes of checksums
  writeOneRun(w, SectionType::pageSums, 0x10000, 2, sums, sizeof(sums));
  w.finish();
  auto e = streamError(sink.bytes());
  CHECK(contains(e, "section 1 (page-sums)"));
  CHECK(contains(e, "page runs of 2 pages need 16 bytes of checksums but the section holds 8"));
}

TEST_CASE("overlapping or unaligned memory regions are refused") {
  auto imageWith = [](uint64_t s0, uint64_t e0, uint64_t s1, uint64_t e1) {
    MemorySink sink;
    capnp::MallocMessageBuilder header;
    fillHeader(header.initRoot<schema::Header>(), 1, 1, "x");
    ImageWriter w(sink, header);
    capnp::MallocMessageBuilder map;
    auto regions = map.initRoot<schema::MemoryMap>().initRegions(2);
    regions[0].setStart(s0);
    regions[0].setEnd(e0);
    regions[1].setStart(s1);
    regions[1].setEnd(e1);
    w.section(SectionType::memoryMap, map);
    w.finish();
    return sink.release();
  };
  CHECK(streamError(imageWith(0x1000, 0x2000, 0x2000, 0x3000)).empty());
  CHECK(contains(streamError(imageWith(0x1000, 0x3000, 0x2000, 0x4000)), "overlaps"));
  CHECK(contains(streamError(imageWith(0x1000, 0x2001, 0x3000, 0x4000)), "not page aligned"));
  CHECK(contains(streamError(imageWith(0x1000, 0x2000, 0x3000, 1ull << 50)), "outside the user address space"));
}

TEST_CASE("a header from a foreign architecture or page size is refused") {
  auto imageWithHeader = [](auto edit) {
    MemorySink sink;
    capnp::MallocMessageBuilder header;
    auto h = header.initRoot<schema::Header>();
    fillHeader(h, 1, 1, "x");
    edit(h);
    ImageWriter w(sink, header);
    w.finish();
    return sink.release();
  };
  CHECK(contains(streamError(imageWithHeader([](auto h) { h.setArch("aarch64"); })),
                 "architecture 'aarch64'"));
  CHECK(contains(streamError(imageWithHeader([](auto h) { h.setPageSize(65536); })),
                 "page size of 65536"));
}

TEST_CASE("an image whose CPU state this CPU lacks is named by feature") {
  capnp::MallocMessageBuilder m;
  auto cpu = m.initRoot<schema::CpuFeatures>();
  cpu.setXcr0(0x2e7);  // x87 SSE AVX AVX-512(3) PKRU
  KJ_IF_MAYBE(why, cpuMismatch(cpu.asReader(), 0x7)) {  // x87 SSE AVX only
    CHECK(contains(why->cStr(), "AVX-512 opmask"));
    CHECK(contains(why->cStr(), "PKRU"));
    CHECK(!contains(why->cStr(), "SSE"));
  } else {
    FAIL("a CPU without AVX-512 was accepted");
  }
  // What a checkpoint here records is what a restart here accepts.
  CHECK(hostCpu().xcr0 == hostXcr0());
  cpu.setXcr0(hostCpu().xcr0);
  CHECK(cpuMismatch(cpu.asReader(), hostXcr0()) == nullptr);
}

TEST_CASE("trailing bytes after the end section are refused in a file") {
  auto good = makeSampleImage();
  auto longer = kj::heapArray<kj::byte>(good.size() + 8);
  memcpy(longer.begin(), good.begin(), good.size());
  memset(longer.begin() + good.size(), 0, 8);
  TempDir dir;
  CHECK(contains(fileError(dir, longer, false), "unexpected bytes after its end section"));
}

TEST_CASE("a flipped byte in a large pages section (hashed through a mapping) is found by verify") {
  MemorySink sink;
  capnp::MallocMessageBuilder header;
  fillHeader(header.initRoot<schema::Header>(), 1, 1, "x");
  ImageWriter w(sink, header);
  constexpr uint32_t kPages = 512;  // 2 MiB: above FileReader's mapping threshold
  std::vector<kj::byte> data(kPages * kPageSize, 0x5a);
  writeOneRun(w, SectionType::pages, 0x10000, kPages, data.data(), data.size());
  w.finish();
  TempDir dir;
  auto good = kj::heapArray<kj::byte>(sink.bytes());
  {
    FileReader f(dir.write("good.img", good).c_str());
    f.verifyAll();
  }
  uint64_t dataOffset = 0;
  {
    FileReader f(dir.write("good.img", good).c_str());
    dataOffset = f.section(1).layout.dataOffset;
  }
  for (uint64_t at : {dataOffset, dataOffset + data.size() / 2 + 17, dataOffset + data.size() - 1}) {
    auto bad = kj::heapArray<kj::byte>(good);
    bad[at] ^= 0x01;
    auto e = fileError(dir, bad, true);
    CHECK(contains(e, "section 1 (pages)"));
    CHECK(contains(e, "checksum mismatch"));
  }
}

}  // namespace
}  // namespace mig::image
