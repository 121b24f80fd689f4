// A regular file's consistency record: captured from the open file, checked at
// restart; a file written in place at the same size with its mtime put back is
// refused (its ctime gives it away, its contents' hash confirms), an untouched one
// passes, and so does one whose bytes were put back as they were.
#include "image/image.capnp.h"
#include "image/image_test_util.h"
#include "resources/fd_kinds.h"
#include "resources/fd_restore.h"

#include <capnp/message.h>
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace mig::resources {
namespace {

using image::testing::contains;
using image::testing::errorOf;

// A temporary file with `text`, removed at the end of the test.
struct TempFile {
  std::string path;
  explicit TempFile(const char* text) {
    char name[] = "/tmp/mig-regular-file-test-XXXXXX";
    int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, text, strlen(text)) == static_cast<ssize_t>(strlen(text)));
    close(fd);
    path = name;
  }
  ~TempFile() { unlink(path.c_str()); }
};

// The record the checkpoint writes for `path` open read-only (saved as fd 3), then
// what the restart's check says of it now ("" when it passes).
struct Saved {
  capnp::MallocMessageBuilder msg;
  explicit Saved(const std::string& path) {
    // The capture reads the file through /proc/self/fd, as it reads the job's.
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    FdProbe p{};
    p.fd = fd;
    p.target = p.path = path;
    p.flags = O_RDONLY;
    REQUIRE(stat(path.c_str(), &p.st) == 0);
    CaptureContext ctx{getpid(), kj::arrayPtr(&p, 1)};
    const FdKind& kind = detectKind(p, ctx);
    REQUIRE(kind.kind == FdRecord::Kind::FILE);
    auto fds = msg.initRoot<image::schema::Files>().initFds(1);
    fds[0].setFd(3);
    fds[0].setKind(kind.kind);
    fds[0].setPath(path.c_str());
    kind.capture(p, ctx, fds[0]);
    close(fd);
  }
  std::string check(bool force = false) {
    FileRestoreOptions o;
    o.force = force;
    return errorOf([&] { checkFdRecords(msg.getRoot<image::schema::Files>().asReader(), "files", o); });
  }
};

TEST_CASE("an untouched file passes the restart's check") {
  TempFile f("the same bytes\n");
  Saved saved(f.path);
  CHECK(saved.check() == "");
}

// Writes `bytes` at offset 0 of `path` and puts its times back, once the coarse clock
// (which stamps ctimes) has moved on from its ctime.
void writeInPlace(const std::string& path, const char* bytes) {
  struct stat before {};
  REQUIRE(stat(path.c_str(), &before) == 0);
  struct timespec now {};
  do clock_gettime(CLOCK_REALTIME_COARSE, &now);
  while (now.tv_sec == before.st_ctim.tv_sec && now.tv_nsec == before.st_ctim.tv_nsec);
  int fd = open(path.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  REQUIRE(pwrite(fd, bytes, strlen(bytes), 0) == static_cast<ssize_t>(strlen(bytes)));
  const struct timespec times[2] = {before.st_atim, before.st_mtim};
  REQUIRE(futimens(fd, times) == 0);
  close(fd);
  struct stat after {};
  REQUIRE(stat(path.c_str(), &after) == 0);
  REQUIRE(after.st_size == before.st_size);
  REQUIRE(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
  REQUIRE(after.st_ino == before.st_ino);
}

TEST_CASE("a file written in place at the same size with its mtime put back is refused, naming it") {
  TempFile f("the same bytes\n");
  Saved saved(f.path);
  writeInPlace(f.path, "THE");
  std::string e = saved.check();
  INFO(e);
  CHECK(contains(e, ("file " + f.path + " (fd 3) changed since the checkpoint (written in place").c_str()));
  CHECK(contains(e, "--force"));
  CHECK(saved.check(/*force=*/true) == "");
}

TEST_CASE("a file whose bytes were put back as they were, times too, passes") {
  TempFile f("the same bytes\n");
  Saved saved(f.path);
  writeInPlace(f.path, "THE");
  writeInPlace(f.path, "the");
  CHECK(saved.check() == "");
}

TEST_CASE("a file too large to hash whose ctime moved is refused") {
  TempFile f("small\n");
  Saved saved(f.path);
  saved.msg.getRoot<image::schema::Files>().getFds()[0].getFile().setContentHash(0);  // as for a large file
  writeInPlace(f.path, "SMALL");
  std::string e = saved.check();
  INFO(e);
  CHECK(contains(e, "its ctime moved, and it is too large to compare its contents"));
}

TEST_CASE("a record from before the ctime was kept (ctimeNs 0) is checked as before") {
  TempFile f("old image\n");
  Saved saved(f.path);
  saved.msg.getRoot<image::schema::Files>().getFds()[0].getFile().setCtimeNs(0);
  chmod(f.path.c_str(), 0600);  // changes only the ctime
  CHECK(saved.check() == "");
}

}  // namespace
}  // namespace mig::resources
