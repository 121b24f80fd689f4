// The kind list: one FdKind per FileDescriptor.Kind value of the schema, and
// detection of the /proc targets a process shows picks the right one.
#include "resources/fd_kinds.h"

#include <capnp/message.h>
#include <capnp/schema.h>
#include <doctest/doctest.h>

#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace mig::resources {
namespace {

using K = FdRecord::Kind;

TEST_CASE("every kind of the schema has exactly one FdKind, with all it must have and its page") {
  auto enumerants = capnp::Schema::from<K>().getEnumerants();
  CHECK(fdKinds().size() == enumerants.size());
  for (auto e : enumerants) {
    INFO(e.getProto().getName().cStr());
    int found = 0;
    for (const FdKind* k : fdKinds()) {
      if (static_cast<uint16_t>(k->kind) != e.getOrdinal()) continue;
      ++found;
      CHECK(static_cast<bool>(k->matches));
      CHECK(static_cast<bool>(k->restore));
      CHECK(&kindOf(k->kind) == k);
      struct stat page {};
      std::string doc = std::string(MIG_SOURCE_ROOT "/docs/kinds/") + k->name + ".md";
      INFO(doc);
      CHECK(stat(doc.c_str(), &page) == 0);
    }
    CHECK(found == 1);
  }
}

FdProbe probe(int fd, const char* target, mode_t mode, uint32_t flags = O_RDWR) {
  FdProbe p{};
  p.fd = fd;
  p.target = target;
  p.path = target;
  p.deleted = p.path.size() > 10 && p.path.compare(p.path.size() - 10, 10, " (deleted)") == 0;
  if (p.deleted) p.path.resize(p.path.size() - 10);
  p.flags = flags;
  p.st.st_mode = mode;
  return p;
}

TEST_CASE("detection of sample /proc targets picks the right kind") {
  std::vector<FdProbe> fds = {
      probe(0, "/dev/pts/3", S_IFCHR),
      probe(1, "pipe:[5001]", S_IFIFO, O_WRONLY),  // to another process: the other end is not ours
      probe(2, "socket:[7002]", S_IFSOCK),
      probe(3, "/etc/passwd", S_IFREG, O_RDONLY),
      probe(4, "/tmp", S_IFDIR, O_RDONLY),
      probe(5, "/tmp/scratch (deleted)", S_IFREG),
      probe(6, "/dev/null", S_IFCHR),
      probe(7, "/dev/urandom", S_IFCHR, O_RDONLY),
      probe(8, "/dev/tty", S_IFCHR),
      probe(9, "pipe:[5002]", S_IFIFO, O_RDONLY),  // both ends held: fds 9 and 10
      probe(10, "pipe:[5002]", S_IFIFO, O_WRONLY),
      probe(11, "anon_inode:[eventfd]", 0),
      probe(12, "anon_inode:[timerfd]", 0),
      probe(13, "anon_inode:[signalfd]", 0),
      probe(14, "anon_inode:[eventpoll]", 0),
      probe(15, "anon_inode:inotify", 0),
  };
  const K want[] = {K::INHERITED, K::INHERITED, K::INHERITED, K::FILE,     K::FILE,    K::UNLINKED,
                    K::DEVICE,    K::DEVICE,    K::INHERITED, K::PIPE,     K::PIPE,    K::EVENTFD,
                    K::TIMERFD,   K::SIGNALFD,  K::EPOLL,     K::INHERITED};
  REQUIRE(fds.size() == sizeof(want) / sizeof(want[0]));
  CaptureContext ctx{1, kj::arrayPtr(fds.data(), fds.size())};
  for (size_t i = 0; i < fds.size(); ++i) {
    INFO(fds[i].target);
    CHECK(detectKind(fds[i], ctx).kind == want[i]);
  }
}

// A shell's `$(...)`: its child wrote and ended, the shell still holds the read end
// (a pipe it made away from home is nothing at home: taken for a stream to another
// process it came home as /dev/null, its bytes lost).
TEST_CASE("a pipe end whose other end is closed everywhere is the process's own pipe") {
  int p[2];
  REQUIRE(pipe(p) == 0);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  REQUIRE(pidfd >= 0);
  std::string target = "/proc/self/fd/" + std::to_string(p[0]);
  char link[64] = {};
  REQUIRE(readlink(target.c_str(), link, sizeof(link) - 1) > 0);
  std::vector<FdProbe> fds = {probe(p[0], link, S_IFIFO, O_RDONLY)};  // the write end not the process's
  CaptureContext ctx{getpid(), kj::arrayPtr(fds.data(), fds.size())};
  ctx.pidfd = pidfd;
  for (bool migration : {false, true}) {
    ctx.options.forMigration = migration;
    CAPTURE(migration);
    CHECK(detectKind(fds[0], ctx).kind == K::INHERITED);  // its writer (here: us) holds the other end
  }
  REQUIRE(write(p[1], "7\n", 2) == 2);
  close(p[1]);
  for (bool migration : {false, true}) {
    ctx.options.forMigration = migration;
    CAPTURE(migration);
    CHECK(detectKind(fds[0], ctx).kind == K::PIPE);
  }
  // Its bytes go into the image and stay in the pipe (put back with no write end held).
  capnp::MallocMessageBuilder msg;
  auto record = msg.initRoot<FdRecord>();
  kindOf(K::PIPE).capture(fds[0], ctx, record);
  CHECK(std::string(reinterpret_cast<const char*>(record.getContents().begin()), record.getContents().size()) == "7\n");
  char back[4] = {};
  CHECK(read(p[0], back, sizeof(back)) == 2);
  CHECK(std::string(back) == "7\n");
  // The lone write end of a pipe whose readers are gone is the process's own too.
  int q[2];
  REQUIRE(pipe(q) == 0);
  close(q[0]);
  target = "/proc/self/fd/" + std::to_string(q[1]);
  char wlink[64] = {};
  REQUIRE(readlink(target.c_str(), wlink, sizeof(wlink) - 1) > 0);
  std::vector<FdProbe> w = {probe(q[1], wlink, S_IFIFO, O_WRONLY)};
  ctx.all = kj::arrayPtr(w.data(), w.size());
  CHECK(detectKind(w[0], ctx).kind == K::PIPE);
  close(q[1]);
  close(p[0]);
  close(pidfd);
}

}  // namespace
}  // namespace mig::resources
