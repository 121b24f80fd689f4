// signalfd fdinfo: the kernel's exact text, a malformed mask, and a real signalfd read back.
#include "resources/signalfd.h"
#include "resources/fdinfo_test_util.h"

#include <csignal>
#include <sys/signalfd.h>

namespace mig::resources::signalfd {
namespace {

TEST_CASE("signalfd: the mask is 16 hex digits") {
  uint64_t mask = 0;
  REQUIRE(parse("pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1044\nsigmask:\t0000000400000200\n", mask) == nullptr);
  CHECK(mask == ((1ull << (SIGUSR1 - 1)) | (1ull << (35 - 1))));
  CHECK(parse("sigmask:\n", mask) != nullptr);
}

TEST_CASE("this kernel's fdinfo of a real signalfd reads back what was set") {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  sigaddset(&set, SIGRTMIN + 3);
  int s = ::signalfd(-1, &set, SFD_CLOEXEC);
  REQUIRE(s >= 0);
  uint64_t mask = 0;
  REQUIRE(parse(testing::ownFdinfo(s), mask) == nullptr);
  CHECK(mask == ((1ull << (SIGUSR2 - 1)) | (1ull << (SIGRTMIN + 3 - 1))));
  ::close(s);
}

}  // namespace
}  // namespace mig::resources::signalfd
