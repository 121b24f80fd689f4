// SoleReaders (sole_reader.h): a stream another process at home may read is never the
// deputy's alone; one whose other holders only write to it, one no one else holds,
// and one made after the look are.
#include "deputy/sole_reader.h"

#include <doctest/doctest.h>

#include <csignal>
#include <fcntl.h>
#include <cstdlib>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::deputy {
namespace {

// A child that keeps the fds in `keep` (and its end of a pipe that tells the test it is
// ready), closes every other, and waits until killed.
class Holder {
 public:
  explicit Holder(std::initializer_list<int> keep) {
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      for (int fd = 3; fd < 1024; ++fd) {
        bool kept = fd == ready[1];
        for (int k : keep) kept = kept || fd == k;
        if (!kept) close(fd);
      }
      close(ready[1]);  // ready: every fd not kept is closed
      for (;;) pause();
    }
    close(ready[1]);
    char c;
    REQUIRE(read(ready[0], &c, 1) == 0);
    close(ready[0]);
  }
  ~Holder() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_;
};

TEST_CASE("pipes: held alone, its write end held by another, its read end held by another, made after the look") {
  int alone[2], written[2], shared[2];
  REQUIRE(pipe(alone) == 0);
  REQUIRE(pipe(written) == 0);
  REQUIRE(pipe(shared) == 0);
  SoleReaders sole;
  {
    Holder writer({written[1]});
    Holder reader({shared[0]});
    CHECK(sole.otherReader(alone[0]) == 0);
    CHECK(sole.otherReader(written[0]) == 0);  // the other only writes to it
    CHECK(sole.otherReader(shared[0]) == reader.pid());
  }
  CHECK(sole.otherReader(shared[0]) > 0);  // shared at the look: counts as shared after
  int later[2];
  REQUIRE(pipe(later) == 0);
  CHECK(sole.otherReader(later[0]) == 0);  // made since: no one else can have it
  for (int* p : {alone, written, shared, later}) {
    close(p[0]);
    close(p[1]);
  }
}

TEST_CASE("sockets: another process holding it may read it, the peer's end is another socket") {
  int peer[2], shared[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, peer) == 0);
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, shared) == 0);
  Holder other({peer[1], shared[0]});
  SoleReaders sole;
  CHECK(sole.otherReader(peer[0]) == 0);
  CHECK(sole.otherReader(shared[0]) == other.pid());
  for (int* p : {peer, shared}) {
    close(p[0]);
    close(p[1]);
  }
}

TEST_CASE("a named FIFO or a file is never a sole reader's stream") {
  char dir[] = "/tmp/sole_reader_test.XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  const std::string fifo = std::string(dir) + "/fifo";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  const int r = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  REQUIRE(r >= 0);
  SoleReaders sole;
  CHECK(sole.otherReader(r) == -1);  // anyone may open it by its path
  const int file = open(dir, O_RDONLY | O_DIRECTORY);
  CHECK(sole.otherReader(file) == -1);
  close(file);
  close(r);
  unlink(fifo.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace mig::deputy
