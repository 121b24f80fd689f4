// What the fd walk of a checkpoint leaves out as mig's own (fd_capture.h).
#include "resources/fd_capture.h"

#include <doctest/doctest.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace mig::resources {
TEST_CASE("a socket bound under @mig/ is known as mig's, another abstract one is not") {
  auto bound = [](const char* name) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    size_t len = strlen(name);
    memcpy(addr.sun_path + 1, name, len);  // abstract: sun_path[0] stays 0
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), offsetof(sockaddr_un, sun_path) + 1 + len) == 0);
    return fd;
  };
  auto inodeOf = [](int fd) {
    struct stat st{};
    REQUIRE(fstat(fd, &st) == 0);
    return static_cast<uint64_t>(st.st_ino);
  };
  std::string suffix = std::to_string(getpid());
  int ours = bound(("mig/test/" + suffix).c_str());
  int theirs = bound(("not-mig/" + suffix).c_str());
  std::set<uint64_t> inodes = migSocketInodes(getpid());
  CHECK(inodes.count(inodeOf(ours)) == 1);
  CHECK(inodes.count(inodeOf(theirs)) == 0);
  close(ours);
  close(theirs);
}
}  // namespace mig::resources
