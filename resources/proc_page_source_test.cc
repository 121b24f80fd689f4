// Reading a memory map: which lines become which kind of region; which pages of a
// stopped process are saved (the page map's rule, also where terabytes are reserved).
#include "image/image_test_util.h"
#include "resources/page_source.h"

#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

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

// The pages of `r` the page map names, one entry read per page: the rule pagesToSave
// follows, to compare its kernel walk with.
kj::Vector<PageSpan> byPageMap(int pagemap, const MappedRegion& r) {
  constexpr uint64_t kPresent = 1ull << 63, kSwapped = 1ull << 62, kFilePage = 1ull << 61;
  kj::Vector<PageSpan> out;
  for (uint64_t addr = r.start; addr < r.end; addr += 4096) {
    uint64_t e = 0;
    REQUIRE(pread(pagemap, &e, sizeof(e), static_cast<off_t>(addr / 4096 * sizeof(e))) == sizeof(e));
    bool save = r.kind == K::FILE ? (e & kSwapped) || ((e & kPresent) && !(e & kFilePage)) : (e & (kPresent | kSwapped)) != 0;
    if (!save) continue;
    if (!out.empty() && out.back().addr + out.back().pages * 4096 == addr) {
      ++out.back().pages;
    } else {
      out.add(PageSpan{addr, 1});
    }
  }
  return out;
}

kj::String show(const kj::Vector<PageSpan>& spans) {
  kj::Vector<kj::String> parts;
  for (const PageSpan& s : spans) parts.add(kj::str(kj::hex(s.addr), "+", s.pages));
  return kj::strArray(parts, " ");
}

TEST_CASE("a stopped process's saved pages are the page map's, and 128 GiB reserved sparsely yield only their touched pages") {
  constexpr uint64_t P = 4096, kBig = uint64_t{64} << 30;
  testing::TempDir dir;
  std::string path = dir.write("data", kj::heapArray<kj::byte>(3 * P).asPtr());
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  int pipefd[2];
  REQUIRE(pipe(pipefd) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Like an ASan shadow: 64 GiB readable and writable, a few pages touched (no huge
    // pages, which would fill 2 MiB at a touch); beside it 64 GiB reserved PROT_NONE;
    // and a private file mapping with one page read (the file's) and one written (a copy).
    // (A PROT_NONE page either side keeps it one region of its own.)
    auto* whole = static_cast<char*>(
        mmap(nullptr, kBig + 2 * P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    if (whole == MAP_FAILED || mprotect(whole + P, kBig, PROT_READ | PROT_WRITE) != 0) _exit(3);
    volatile char* sparse = whole + P;
    void* reserved = mmap(nullptr, kBig, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    auto* file = static_cast<volatile char*>(mmap(nullptr, 3 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
    if (reserved == MAP_FAILED || file == MAP_FAILED) _exit(3);
    madvise(const_cast<char*>(sparse), kBig, MADV_NOHUGEPAGE);
    for (uint64_t off : {uint64_t{0}, P, 2 * P, uint64_t{1} << 30, kBig - P}) sparse[off] = 1;
    (void)file[0];
    file[P] = 1;
    uint64_t at[3] = {reinterpret_cast<uint64_t>(sparse), reinterpret_cast<uint64_t>(reserved),
                      reinterpret_cast<uint64_t>(file)};
    if (write(pipefd[1], at, sizeof(at)) != sizeof(at)) _exit(3);
    raise(SIGSTOP);
    _exit(0);
  }
  close(pipefd[1]);
  close(fd);
  KJ_DEFER({
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  });
  uint64_t at[3] = {};
  REQUIRE(read(pipefd[0], at, sizeof(at)) == sizeof(at));
  close(pipefd[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, WUNTRACED) == pid);
  REQUIRE(WIFSTOPPED(status));

  ProcPageSource src(pid);
  int pagemap = open(kj::str("/proc/", pid, "/pagemap").cStr(), O_RDONLY | O_CLOEXEC);
  REQUIRE(pagemap >= 0);
  KJ_DEFER(close(pagemap));
  size_t compared = 0, sawSparse = 0, sawReserved = 0, sawFile = 0;
  for (const MappedRegion& r : src.regions()) {
    kj::Vector<PageSpan> got;
    src.pagesToSave(r, got);
    if (r.start == at[0]) {
      ++sawSparse;
      CHECK(show(got) == kj::str(kj::hex(at[0]), "+3 ", kj::hex(at[0] + (uint64_t{1} << 30)), "+1 ",
                                 kj::hex(at[0] + kBig - P), "+1"));
    } else if (r.start <= at[1] && at[1] < r.end) {
      ++sawReserved;
      CHECK(got.empty());
    } else if (r.start == at[2]) {
      ++sawFile;
      CHECK(show(got) == kj::str(kj::hex(at[2] + P), "+1"));
    }
    // The rest (the test program, its libraries, heap and stack): as the page map says
    // page by page, where the source goes by the map (not shared memory, read whole).
    bool byMap = r.flags == MAP_PRIVATE && !r.saveWhole && r.kind != K::VDSO && r.kind != K::VVAR &&
                 r.kind != K::VVAR_VCLOCK;
    if (byMap && r.end - r.start <= (uint64_t{1} << 30)) {
      ++compared;
      CHECK_MESSAGE(show(got) == show(byPageMap(pagemap, r)), "region ", kj::hex(r.start), " ", r.path);
    }
  }
  CHECK(sawSparse == 1);
  CHECK(sawReserved == 1);
  CHECK(sawFile == 1);
  CHECK(compared > 5);
}

}  // namespace
}  // namespace mig::resources
