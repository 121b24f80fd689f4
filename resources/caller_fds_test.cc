// Which of migctl's fds may stand in for a saved home stream: only the ones its
// caller gave it, still open on the same file.
#include "resources/caller_fds.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

namespace mig::resources {
namespace {

struct stat statOf(dev_t dev, ino_t ino) {
  struct stat st {};
  st.st_dev = dev;
  st.st_ino = ino;
  return st;
}

CallerFds callerGave() {
  kj::Vector<CallerFd> fds;
  fds.add(CallerFd{0, 5, 100});
  fds.add(CallerFd{1, 12, 7001});  // a pipe
  fds.add(CallerFd{2, 12, 7002});
  return CallerFds(kj::mv(fds));
}

TEST_CASE("caller fds: an fd the caller gave, on the same file, stands in") {
  auto st = statOf(12, 7001);
  CHECK(callerGave().inherited(1, &st));
}

TEST_CASE("caller fds: an fd migctl opened itself (the image at 3) never stands in") {
  auto image = statOf(8, 4242);
  CHECK_FALSE(callerGave().inherited(3, &image));
}

TEST_CASE("caller fds: a number the caller gave but now open on another file does not stand in") {
  auto image = statOf(8, 4242);
  CHECK_FALSE(callerGave().inherited(0, &image));
  auto otherPipe = statOf(12, 7002);  // same filesystem, another inode
  CHECK_FALSE(callerGave().inherited(1, &otherPipe));
}

TEST_CASE("caller fds: a closed fd does not stand in") {
  CHECK_FALSE(callerGave().inherited(0, nullptr));
}

TEST_CASE("caller fds: atStartup sees what is open, and not what is opened later") {
  int before = open("/dev/null", O_RDONLY);
  REQUIRE(before >= 0);
  CallerFds fds = CallerFds::atStartup();
  CHECK(fds.inherited(before));
  int after = open("/dev/zero", O_RDONLY);
  REQUIRE(after >= 0);
  CHECK_FALSE(fds.inherited(after));
  close(before);
  CHECK_FALSE(fds.inherited(before));
  int reused = open("/dev/zero", O_RDONLY);  // likely at `before`'s number: another file
  CHECK_FALSE(fds.inherited(reused));
  close(reused);
  close(after);
}

}  // namespace
}  // namespace mig::resources
