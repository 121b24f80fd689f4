// The post-copy sender's copy of the pages (page_copy.h): what shadowd reads back from
// the file is what the sender wrote, and only once the copy was complete.
#include "shadow/page_copy.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace mig::shadow {
namespace {

kj::String tempPath() {
  char dir[] = "/tmp/mig-page-copy-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  return kj::str(dir, "/job-1.pages");
}

TEST_CASE("page copy: a complete copy is read back run by run; an incomplete one is refused") {
  auto path = tempPath();
  kj::String why;
  auto runs = kj::heapArray<PageRun>({PageRun{0x10000, 3 * 4096, 0}, PageRun{0x7f0000000000, 4096, 0}});
  auto copy = PageCopy::create(path, kj::mv(runs), why);
  REQUIRE(copy.get() != nullptr);
  for (auto& r : copy->runs()) memset(copy->bytes(r), static_cast<int>(r.addr >> 16 & 0x7f), r.len);

  kj::String notYet;
  CHECK(PageCopy::open(path, notYet).get() == nullptr);  // the sender died while copying
  CHECK(strstr(notYet.cStr(), "incomplete") != nullptr);

  copy->markComplete();
  auto back = PageCopy::open(path, why);
  REQUIRE(back.get() != nullptr);
  REQUIRE(back->runs().size() == 2);
  const PageRun* r = back->find(0x10000 + 2 * 4096 + 5);
  REQUIRE(r != nullptr);
  CHECK(r->addr == 0x10000);
  CHECK(r->len == 3 * 4096);
  CHECK(back->bytes(*r)[r->len - 1] == 1);
  const PageRun* high = back->find(0x7f0000000000);
  REQUIRE(high != nullptr);
  CHECK(back->bytes(*high)[0] == static_cast<char>(0x7f0000000000 >> 16 & 0x7f));
  CHECK(back->find(0x10000 + 3 * 4096) == nullptr);
  CHECK(back->find(0x9000) == nullptr);
  unlink(path.cStr());
}

TEST_CASE("page copy: without a path it lives in memory; a file that is no copy is refused") {
  kj::String why;
  auto copy = PageCopy::create("", kj::heapArray<PageRun>({PageRun{0x20000, 4096, 0}}), why);
  REQUIRE(copy.get() != nullptr);
  copy->bytes(copy->runs()[0])[4095] = 'x';
  CHECK(copy->bytes(copy->runs()[0])[4095] == 'x');

  auto path = tempPath();
  FILE* f = fopen(path.cStr(), "w");
  fputs("not pages at all, just text that is long enough to be read as a header", f);
  fclose(f);
  CHECK(PageCopy::open(path, why).get() == nullptr);
  CHECK(strstr(why.cStr(), "not a copy of pages") != nullptr);
  unlink(path.cStr());
  CHECK(PageCopy::open(path, why).get() == nullptr);
}

}  // namespace
}  // namespace mig::shadow
