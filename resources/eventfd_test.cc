// eventfd fdinfo: the kernel's exact text (as kernel 6.18 prints it), older kernels'
// variants, malformed lines, and a real eventfd read back.
#include "resources/eventfd.h"
#include "resources/fdinfo_test_util.h"

#include <sys/eventfd.h>

namespace mig::resources::eventfd {
namespace {

TEST_CASE("eventfd: the count is hexadecimal, the semaphore line is optional") {
  Info e;
  const char* k618 = "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1044\neventfd-count:               1f\n"
                     "eventfd-id: 3\neventfd-semaphore: 1\n";
  REQUIRE(parse(k618, e) == nullptr);
  CHECK(e.count == 0x1f);
  CHECK(e.semaphore);
  const char* old = "pos:\t0\nflags:\t02\nmnt_id:\t15\neventfd-count: fffffffffffffffe\n";
  REQUIRE(parse(old, e) == nullptr);
  CHECK(e.count == 0xfffffffffffffffeull);
  CHECK_FALSE(e.semaphore);
  CHECK(parse("pos:\t0\n", e) != nullptr);
  CHECK(parse("eventfd-count: zz\n", e) != nullptr);
  CHECK(parse("eventfd-count: 5\neventfd-semaphore: 7\n", e) != nullptr);
}

TEST_CASE("this kernel's fdinfo of a real eventfd reads back what was set") {
  int e = ::eventfd(0, EFD_SEMAPHORE | EFD_CLOEXEC);
  REQUIRE(e >= 0);
  uint64_t add = 0x123456789ull;
  REQUIRE(write(e, &add, sizeof(add)) == sizeof(add));
  Info ev;
  REQUIRE(parse(testing::ownFdinfo(e), ev) == nullptr);
  CHECK(ev.count == 0x123456789ull);
  ::close(e);
}

}  // namespace
}  // namespace mig::resources::eventfd
