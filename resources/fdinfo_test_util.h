// What the kinds' fdinfo tests share: the kernel's own fdinfo text of an fd of ours.
#pragma once

#include <doctest/doctest.h>

#include <fcntl.h>
#include <string>
#include <unistd.h>

namespace mig::resources::testing {

inline std::string ownFdinfo(int fd) {
  std::string path = "/proc/self/fdinfo/" + std::to_string(fd);
  int f = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(f >= 0);
  char buf[8192];
  ssize_t n = ::read(f, buf, sizeof(buf));
  ::close(f);
  REQUIRE(n > 0);
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace mig::resources::testing
