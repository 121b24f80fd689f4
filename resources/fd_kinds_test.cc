// The kind list: one FdKind per FileDescriptor.Kind value of the schema, and
// detection of the /proc targets a process shows picks the right one.
#include "resources/fd_kinds.h"

#include <capnp/schema.h>
#include <doctest/doctest.h>

#include <fcntl.h>
#include <string>
#include <sys/stat.h>
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

}  // namespace
}  // namespace mig::resources
