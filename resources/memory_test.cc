// What writeMemory stores of short saved runs (sparsePages sections): only the words
// that differ from the page a restart puts there (zeros, or the mapped file's bytes).
#include "image/byte_io.h"
#include "image/file_reader.h"
#include "image/host_facts.h"
#include "image/image_test_util.h"
#include "image/writer.h"
#include "resources/memory.h"
#include "resources/page_source.h"

#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace mig::resources {
namespace {

using K = image::schema::MemoryRegion::Kind;
constexpr uint64_t kPage = 4096;

// Memory as given: regions, each with its bytes and its spans to save.
class FakeMemory final : public PageSource {
 public:
  struct Part {
    MappedRegion region;
    std::vector<kj::byte> bytes;
  };
  std::vector<Part> parts;

  kj::Array<MappedRegion> regions() override {
    auto out = kj::heapArrayBuilder<MappedRegion>(parts.size());
    for (auto& p : parts) {
      MappedRegion r{};
      r.start = p.region.start;
      r.end = p.region.end;
      r.prot = p.region.prot;
      r.flags = p.region.flags;
      r.kind = p.region.kind;
      r.path = kj::str(p.region.path);
      r.offset = p.region.offset;
      r.inode = p.region.inode;
      out.add(kj::mv(r));
    }
    return out.finish();
  }
  void pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) override {
    out.add(PageSpan{r.start, (r.end - r.start) / kPage});
  }
  void read(uint64_t addr, void* buf, size_t len) override {
    for (auto& p : parts) {
      if (addr >= p.region.start && addr + len <= p.region.end) {
        memcpy(buf, p.bytes.data() + (addr - p.region.start), len);
        return;
      }
    }
    FAIL("read outside the fake memory");
  }
};

TEST_CASE("short runs keep only the words that differ from zeros or from the mapped file") {
  image::testing::TempDir dir;
  std::vector<kj::byte> file(2 * kPage, 'F');
  std::string path = dir.write("lib.so", kj::arrayPtr(file.data(), file.size()));
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);

  FakeMemory mem;
  // A private file mapping: page 0 has bytes 100-107 changed, page 1 is the file's.
  FakeMemory::Part lib{};
  lib.region.start = 0x100000;
  lib.region.end = 0x100000 + 2 * kPage;
  lib.region.prot = PROT_READ | PROT_WRITE;
  lib.region.flags = MAP_PRIVATE;
  lib.region.kind = K::FILE;
  lib.region.path = kj::str(path.c_str());
  lib.region.inode = st.st_ino;
  lib.bytes = file;
  memset(lib.bytes.data() + 100, 'x', 8);
  mem.parts.push_back(std::move(lib));
  // Anonymous memory: two words 64 bytes apart (one extent), a page of zeros.
  FakeMemory::Part anon{};
  anon.region.start = 0x200000;
  anon.region.end = 0x200000 + 2 * kPage;
  anon.region.prot = PROT_READ | PROT_WRITE;
  anon.region.flags = MAP_PRIVATE;
  anon.region.kind = K::ANONYMOUS;
  anon.region.path = kj::str("");
  anon.bytes.assign(2 * kPage, 0);
  anon.bytes[4000] = 1;
  anon.bytes[4072] = 2;
  mem.parts.push_back(std::move(anon));

  image::MemorySink sink;
  CaptureStats stats{};
  {
    capnp::MallocMessageBuilder header;
    image::fillHeader(header.initRoot<image::schema::Header>(), 1, 1, "x");
    image::ImageWriter w(sink, header);
    writeMemory(mem, w, stats);
    w.finish();
  }
  CHECK(stats.savedPages == 2);
  image::FileReader img(dir.write("m.img", sink.bytes()).c_str());
  size_t sparse = img.sectionCount();
  for (size_t i = 0; i < img.sectionCount(); ++i) {
    CHECK(img.section(i).type != static_cast<uint16_t>(image::SectionType::pages));
    if (img.section(i).type == static_cast<uint16_t>(image::SectionType::sparsePages)) sparse = i;
  }
  REQUIRE(sparse < img.sectionCount());
  auto meta = img.meta<image::schema::Pages>(sparse);
  REQUIRE(meta.getRuns().size() == 2);
  CHECK(meta.getRuns()[0].getAddr() == 0x100000);
  CHECK(meta.getRuns()[0].getPages() == 1);
  CHECK(meta.getRuns()[1].getAddr() == 0x200000);
  CHECK(meta.getRuns()[1].getPages() == 1);
  REQUIRE(meta.getExtents().size() == 2);
  CHECK(meta.getExtents()[0].getAddr() == 0x100000 + 96);
  CHECK(meta.getExtents()[0].getLen() == 16);
  CHECK(meta.getExtents()[1].getAddr() == 0x200000 + 4000);
  CHECK(meta.getExtents()[1].getLen() == 80);
  REQUIRE(img.section(sparse).dataLen == 96);
  auto data = kj::heapArray<kj::byte>(96);
  img.readData(sparse, 0, data.begin(), data.size());
  CHECK(memcmp(data.begin(), "FFFFxxxxxxxxFFFF", 16) == 0);
  CHECK(data[16] == 1);
  CHECK(data[16 + 72] == 2);
}

}  // namespace
}  // namespace mig::resources
