// The atomic image file: complete under its name, or not there at all.
#include "image/byte_io.h"
#include "image/image_test_util.h"
#include "image/sample_image.h"

#include <csignal>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>

namespace mig::image {
namespace {

using testing::contains;
using testing::errorOf;
using testing::TempDir;

int filesIn(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  int n = 0;
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.' || (e->d_name[1] != '\0' && e->d_name[1] != '.');
  closedir(d);
  return n;
}

TEST_CASE("an atomic file appears under its name only when committed") {
  TempDir dir;
  auto path = dir.file("out.img");
  {
    AtomicFile f(path.c_str());
    f.sink().write("abc", 3);
    struct stat st;
    CHECK(stat(path.c_str(), &st) != 0);
    f.commit();
  }
  struct stat st;
  REQUIRE(stat(path.c_str(), &st) == 0);
  CHECK(st.st_size == 3);
  CHECK(filesIn(dir.path()) == 1);
}

TEST_CASE("an abandoned atomic file leaves nothing behind") {
  TempDir dir;
  {
    AtomicFile f(dir.file("out.img").c_str());
    f.sink().write("abc", 3);
  }
  CHECK(filesIn(dir.path()) == 0);
}

TEST_CASE("a full disk fails the write with its cause and leaves no half image") {
  TempDir dir;
  auto path = dir.file("out.img");
  auto image = makeSampleImage();
  pid_t child = fork();
  if (child == 0) {
    // RLIMIT_FSIZE makes the write fail part-way as a full disk would (EFBIG).
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {8192, 8192};
    setrlimit(RLIMIT_FSIZE, &lim);
    std::string e = errorOf([&] {
      AtomicFile f(path.c_str());
      f.sink().write(image.begin(), image.size());
      f.commit();
    });
    _exit(contains(e, "writing") && contains(e, "out.img") && contains(e, "too large") ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(filesIn(dir.path()) == 0);
}

TEST_CASE("an image cannot be created in a missing directory, and says so") {
  auto e = errorOf([] { AtomicFile f("/nonexistent-dir/x.img"); });
  CHECK(contains(e, "cannot create /nonexistent-dir/x.img"));
  CHECK(contains(e, "No such file or directory"));
}

}  // namespace
}  // namespace mig::image
