// Helpers shared by the image unit tests.
#pragma once

#include <doctest/doctest.h>
#include <kj/exception.h>
#include <kj/string.h>

#include <string>

namespace mig::image::testing {

// Runs f, which must throw a kj::Exception; returns its description ("" if none).
template <typename F>
std::string errorOf(F&& f) {
  try {
    f();
  } catch (const kj::Exception& e) {
    return std::string(e.getDescription().cStr());
  }
  return "";
}

inline bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

}  // namespace mig::image::testing

#include <kj/array.h>

#include <cstdlib>
#include <fcntl.h>
#include <unistd.h>

namespace mig::image::testing {

// A private temporary directory removed with its files at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/mig-unit-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() { (void)!system(("rm -rf '" + path_ + "'").c_str()); }
  std::string file(const char* name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

  std::string write(const char* name, kj::ArrayPtr<const kj::byte> bytes) const {
    std::string p = file(name);
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, bytes.begin(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
    ::close(fd);
    return p;
  }

 private:
  std::string path_;
};

}  // namespace mig::image::testing
