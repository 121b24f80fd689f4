// Unit tests of the locality policy (locality.h): which paths a migrated process
// sends home.
#include "shim/forward/locality.h"

#include "shim/forward/state.h"

#include <doctest/doctest.h>
#include <fcntl.h>

#include <cstring>
#include <memory>

using namespace mig::forward;

namespace {

std::unique_ptr<State> stateWith(std::initializer_list<const char*> localPaths, std::initializer_list<int> homeFds) {
  auto s = std::make_unique<State>();
  memset(static_cast<void*>(s.get()), 0, sizeof(State));
  for (const char* p : localPaths) strcpy(s->config.localPaths[s->config.localPathCount++], p);
  for (int fd : homeFds) setForwardedFd(*s, fd, true);
  return s;
}

}  // namespace

TEST_CASE("absolute paths are home unless under a local path or a host view") {
  auto s = stateWith({"/tmp/scratch", "/data/"}, {});
  CHECK(pathIsHome(*s, AT_FDCWD, "/home/user/results.txt"));
  CHECK(pathIsHome(*s, AT_FDCWD, "/tmp/other"));
  CHECK_FALSE(pathIsHome(*s, AT_FDCWD, "/tmp/scratch"));
  CHECK_FALSE(pathIsHome(*s, AT_FDCWD, "/tmp/scratch/a/b"));
  CHECK(pathIsHome(*s, AT_FDCWD, "/tmp/scratchy"));  // a prefix only at a component boundary
  CHECK_FALSE(pathIsHome(*s, AT_FDCWD, "/data/set"));  // a trailing slash in the policy
  CHECK_FALSE(pathIsHome(*s, AT_FDCWD, "/proc/self/maps"));
  CHECK_FALSE(pathIsHome(*s, AT_FDCWD, "/sys/devices/system/cpu/online"));
  CHECK_FALSE(pathIsHome(*s, AT_FDCWD, "/dev/null"));
  CHECK(pathIsHome(*s, AT_FDCWD, "/process"));
}

TEST_CASE("a path climbing out of a local directory is not trusted to be local") {
  auto s = stateWith({"/tmp/scratch"}, {});
  CHECK(pathIsHome(*s, AT_FDCWD, "/tmp/scratch/../../etc/passwd"));
  CHECK_FALSE(pathIsHome(*s, AT_FDCWD, "/tmp/scratch/..data"));  // not a ".." component
}

TEST_CASE("relative paths follow their directory fd or the working directory") {
  auto s = stateWith({}, {3});
  CHECK(pathIsHome(*s, AT_FDCWD, "out.txt"));
  CHECK(pathIsHome(*s, AT_FDCWD, ""));  // AT_EMPTY_PATH on the working directory
  s->cwdLocal.store(1);
  CHECK_FALSE(pathIsHome(*s, AT_FDCWD, "out.txt"));
  CHECK(pathIsHome(*s, 3, "out.txt"));
  CHECK(pathIsHome(*s, 3, ""));  // fstat of a home fd
  CHECK_FALSE(pathIsHome(*s, 4, "out.txt"));
}

TEST_CASE("the names of the process's own fds follow the fd") {
  auto s = stateWith({}, {1, 3});
  CHECK(pathIsHome(*s, AT_FDCWD, "/dev/stdout"));
  CHECK_FALSE(pathIsHome(*s, AT_FDCWD, "/dev/stderr"));
  CHECK(pathIsHome(*s, AT_FDCWD, "/dev/fd/3"));
  CHECK(pathIsHome(*s, AT_FDCWD, "/proc/self/fd/3"));
  CHECK_FALSE(pathIsHome(*s, AT_FDCWD, "/proc/self/fd/4"));
  CHECK_FALSE(pathIsHome(*s, AT_FDCWD, "/dev/fd/3x"));  // not an fd name: a host view
}

TEST_CASE("a null path counts as home, where the call fails as it would here") {
  auto s = stateWith({}, {});
  CHECK(pathIsHome(*s, AT_FDCWD, nullptr));
}
