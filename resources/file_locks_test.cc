// File locks: the kernel's fdinfo "lock:" lines, this process's own locks read back,
// the restart's check refusing a lock held by another owner, and a lock taken again.
#include "resources/file_locks.h"

#include <capnp/message.h>
#include <doctest/doctest.h>

#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <sys/file.h>
#include <unistd.h>

namespace mig::resources::file_locks {
namespace {

TEST_CASE("file locks: fcntl, OFD and flock lines as the kernel writes them") {
  Lock l;
  REQUIRE(parseLine("1: POSIX  ADVISORY  WRITE 4242 08:01:1234 0 99", l) == nullptr);
  CHECK(l.kind == Kind::POSIX);
  CHECK(l.write);
  CHECK(l.start == 0);
  CHECK(l.end == 99);
  REQUIRE(parseLine("2: OFDLCK ADVISORY  READ  -1 00:2a:77 200 EOF", l) == nullptr);
  CHECK(l.kind == Kind::OFD);
  CHECK(!l.write);
  CHECK(l.start == 200);
  CHECK(l.end == -1);
  REQUIRE(parseLine("3: FLOCK  ADVISORY  WRITE 4242 00:2a:77 0 EOF", l) == nullptr);
  CHECK(l.kind == Kind::FLOCK);
  CHECK(l.write);
  CHECK(parseLine("4: LEASE  ACTIVE    READ  4242 00:2a:77 0 EOF", l) != nullptr);
  CHECK(parseLine("5: POSIX  ADVISORY  WRITE 4242 00:2a:77 9 3", l) != nullptr);
  CHECK(parseLine("", l) != nullptr);
  CHECK(describe(Lock{Kind::POSIX, true, 0, 99}) == "a WRITE lock (fcntl) on bytes 0-99");
  CHECK(describe(Lock{Kind::OFD, false, 5, -1}) == "a READ lock (OFD) on bytes 5 to the end");
}

struct TempFile {
  std::string path;
  TempFile() {
    char name[] = "/tmp/mig-file-locks-XXXXXX";
    int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, "0123456789", 10) == 10);
    close(fd);
    path = name;
  }
  ~TempFile() { unlink(path.c_str()); }
};

void addFd(image::schema::FileDescriptor::Builder f, int fd, const std::string& path) {
  f.setFd(fd);
  f.setKind(image::schema::FileDescriptor::Kind::FILE);
  f.setPath(path.c_str());
}

TEST_CASE("file locks: this process's own locks are read from fdinfo, each on the fd it was taken through") {
  TempFile t;
  int a = open(t.path.c_str(), O_RDWR), b = open(t.path.c_str(), O_RDWR), c = open(t.path.c_str(), O_RDONLY);
  REQUIRE((a >= 0 && b >= 0 && c >= 0));
  struct flock posix = {F_WRLCK, SEEK_SET, 0, 100, 0};
  REQUIRE(fcntl(a, F_SETLK, &posix) == 0);
  struct flock ofd = {F_RDLCK, SEEK_SET, 200, 0, 0};
  REQUIRE(fcntl(b, F_OFD_SETLK, &ofd) == 0);
  REQUIRE(flock(c, LOCK_SH) == 0);

  capnp::MallocMessageBuilder msg;
  auto files = msg.initRoot<image::schema::Files>();
  auto fds = files.initFds(3);
  addFd(fds[0], a, t.path);
  addFd(fds[1], b, t.path);
  addFd(fds[2], c, t.path);
  kj::Vector<kj::String> warnings;
  capture(getpid(), files, warnings);
  CHECK(warnings.empty());
  auto locks = files.getLocks();
  REQUIRE(locks.size() == 3);
  bool sawPosix = false, sawOfd = false, sawFlock = false;
  for (auto l : locks) {
    if (l.getKind() == Kind::POSIX) {
      sawPosix = l.getFd() == a && l.getWrite() && l.getStart() == 0 && l.getEnd() == 99;
    } else if (l.getKind() == Kind::OFD) {
      sawOfd = l.getFd() == b && !l.getWrite() && l.getStart() == 200 && l.getEnd() == -1;
    } else {
      sawFlock = l.getFd() == c && !l.getWrite();
    }
  }
  CHECK(sawPosix);
  CHECK(sawOfd);
  CHECK(sawFlock);

  // Our POSIX lock is another owner's to the check's own open file description: held.
  CHECK_THROWS_WITH(check(files.asReader()), doctest::Contains("a WRITE lock (fcntl) on bytes 0-99"));
  close(a);  // drops this process's fcntl locks on the file
  close(b);
  close(c);
  CHECK_NOTHROW(check(files.asReader()));
}

TEST_CASE("file locks: taken again on their fds, and refused when someone took them meanwhile") {
  TempFile t;
  capnp::MallocMessageBuilder msg;
  auto files = msg.initRoot<image::schema::Files>();
  int fd = open(t.path.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  addFd(files.initFds(1)[0], fd, t.path);
  auto lock = files.initLocks(1)[0];
  lock.setFd(fd);
  lock.setKind(Kind::OFD);
  lock.setWrite(true);
  lock.setStart(0);
  lock.setEnd(-1);
  REQUIRE_NOTHROW(retake(files.asReader()));
  int other = open(t.path.c_str(), O_RDWR);
  struct flock probe = {F_WRLCK, SEEK_SET, 0, 0, 0};
  REQUIRE(fcntl(other, F_OFD_GETLK, &probe) == 0);
  CHECK(probe.l_type == F_WRLCK);  // ours, seen from another description
  close(fd);
  struct flock take = {F_WRLCK, SEEK_SET, 0, 0, 0};
  REQUIRE(fcntl(other, F_OFD_SETLK, &take) == 0);  // now the other description holds it
  fd = open(t.path.c_str(), O_RDWR);
  files.getFds()[0].setFd(fd);
  files.getLocks()[0].setFd(fd);
  CHECK_THROWS_WITH(retake(files.asReader()), doctest::Contains("another open file description (an OFD lock names no process) holds a lock in its way"));
  close(fd);
  close(other);
}

}  // namespace
}  // namespace mig::resources::file_locks
