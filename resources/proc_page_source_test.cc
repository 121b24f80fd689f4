// Reading a memory map: which lines become which kind of region.
#include "image/image_test_util.h"
#include "resources/page_source.h"

#include <sys/mman.h>

namespace mig::resources {
namespace {

namespace testing = image::testing;
using K = image::schema::MemoryRegion::Kind;

MappedRegion parse(const char* line) {
  MappedRegion r{};
  REQUIRE(parseMapsLine(line, r));
  return r;
}

TEST_CASE("maps lines become regions of the right kind") {
  auto lib = parse("7f5ea0116000-7f5ea0126000 r-xp 00010000 fe:00 332383   /usr/lib/x86_64-linux-gnu/libm.so.6\n");
  CHECK(lib.start == 0x7f5ea0116000);
  CHECK(lib.end == 0x7f5ea0126000);
  CHECK(lib.prot == (PROT_READ | PROT_EXEC));
  CHECK(lib.flags == MAP_PRIVATE);
  CHECK(lib.kind == K::FILE);
  CHECK(lib.offset == 0x10000);
  CHECK(lib.inode == 332383);
  CHECK(lib.path == "/usr/lib/x86_64-linux-gnu/libm.so.6");

  CHECK(parse("55c14db10000-55c14db31000 rw-p 00000000 00:00 0   [heap]").kind == K::HEAP);
  CHECK(parse("7ffd1000-7ffd2000 rw-p 00000000 00:00 0   [stack]").kind == K::STACK);
  CHECK(parse("7fdc8efa9000-7fdc8efad000 r--p 00000000 00:00 0  [vvar]").kind == K::VVAR);
  CHECK(parse("7fdc8efad000-7fdc8efaf000 r--p 00000000 00:00 0  [vvar_vclock]").kind == K::VVAR_VCLOCK);
  CHECK(parse("7fdc8efaf000-7fdc8efb1000 r-xp 00000000 00:00 0  [vdso]").kind == K::VDSO);
  auto anon = parse("7f5ea00b1000-7f5ea00f1000 rw-p 00000000 00:00 0 ");
  CHECK(anon.kind == K::ANONYMOUS);
  CHECK(anon.path == "");
  auto shared = parse("7f0000000000-7f0000100000 rw-s 00000000 00:01 1024  /dev/zero (deleted)");
  CHECK(shared.kind == K::ANONYMOUS);
  CHECK(shared.flags == MAP_SHARED);
  CHECK(parse("7f0000000000-7f0000001000 rw-s 00000000 00:01 7  /memfd:buf (deleted)").kind == K::MEMFD);
  CHECK(parse("7f0000000000-7f0000001000 rw-s 00000000 00:01 7  /tmp/gone (deleted)").kind == K::MEMFD);
  CHECK(parse("7f0000000000-7f0000001000 ---p 00000000 00:00 0  [anon:guard]").kind == K::ANONYMOUS);
}

TEST_CASE("maps lines that are not process memory are left out") {
  MappedRegion r{};
  CHECK_FALSE(parseMapsLine("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]", r));
  CHECK_FALSE(parseMapsLine("7f0000000000-7f0000004000 r-xp 00000000 fe:00 5  /opt/mig/libexec/mig/mig-restore", r));
}

TEST_CASE("a garbled maps line is an error, not a guess") {
  MappedRegion r{};
  CHECK(testing::contains(testing::errorOf([&] { parseMapsLine("hello world", r); }), "unexpected line"));
}

TEST_CASE("this process's own memory map reads back, and its touched pages are found") {
  ProcPageSource src(getpid());
  auto regions = src.regions();
  REQUIRE(regions.size() > 5);
  static char touched[3 * 4096] __attribute__((aligned(4096)));
  touched[4096] = 1;
  uint64_t addr = reinterpret_cast<uint64_t>(&touched[4096]);
  bool found = false;
  for (auto& r : regions) {
    if (addr < r.start || addr >= r.end) continue;
    kj::Vector<PageSpan> spans;
    src.pagesToSave(r, spans);
    for (auto& s : spans) found = found || (addr >= s.addr && addr < s.addr + s.pages * 4096);
  }
  CHECK(found);
  char byte = 0;
  src.read(addr, &byte, 1);
  CHECK(byte == 1);
}

}  // namespace
}  // namespace mig::resources
