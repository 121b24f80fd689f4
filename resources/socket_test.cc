// The socket kinds on this process's own sockets: what a checkpoint saves of them
// (through pidfd_getfd of ourselves), what it warns about or refuses, and what a
// restart makes of the records.
#include "resources/fd_kinds.h"
#include "resources/fd_restore.h"
#include "resources/socket_state.h"

#include "image/image_error.h"
#include "shim/fd_passing.h"

#include <capnp/message.h>
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

namespace mig::resources {
namespace {

using K = FdRecord::Kind;
using State = image::schema::FileDescriptor::SocketState;

// A checkpoint of some of our own fds: their records, and its warnings.
struct Captured {
  capnp::MallocMessageBuilder msg;
  kj::Vector<kj::String> warnings;
  kj::String error;  // the checkpoint's failure, if it failed
  kj::ArrayPtr<const FdRecord::Reader> all() { return readers.asPtr(); }
  FdRecord::Reader at(int fd) {
    for (auto r : readers) {
      if (r.getFd() == fd) return r;
    }
    FAIL("no record of fd ", fd);
    return readers[0];
  }
  kj::Vector<FdRecord::Reader> readers;
};

// `migration`: a hop's capture; `tree`: the sockets of the image's processes (a
// family's tree image, kTreeSocket | inode), null for one process.
kj::Own<Captured> capture(std::vector<int> fds, bool migration = false, const std::set<uint64_t>* tree = nullptr) {
  auto out = kj::heap<Captured>();
  std::vector<FdProbe> probes;
  for (int fd : fds) {
    FdProbe p{};
    p.fd = fd;
    char link[64];
    ssize_t n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), link, sizeof(link));
    REQUIRE(n > 0);
    p.target = p.path = std::string(link, static_cast<size_t>(n));
    probes.push_back(p);
  }
  kj::AutoCloseFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0)));
  REQUIRE(pidfd != nullptr);
  CaptureContext ctx{getpid(), kj::arrayPtr(probes.data(), probes.size())};
  ctx.pidfd = pidfd;
  ctx.warnings = &out->warnings;
  ctx.options.forMigration = migration;
  ctx.treePipes = tree;
  auto list = out->msg.initRoot<image::schema::Files>().initFds(static_cast<unsigned>(probes.size()));
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                for (size_t i = 0; i < probes.size(); ++i) {
                  list[i].setFd(probes[i].fd);
                  const FdKind& kind = detectKind(probes[i], ctx);
                  list[i].setKind(kind.kind);
                  if (kind.capture != nullptr) kind.capture(probes[i], ctx, list[i]);
                }
              })) {
    out->error = kj::str(e->getDescription());
  }
  for (auto r : out->msg.getRoot<image::schema::Files>().asReader().getFds()) out->readers.add(r);
  return out;
}

// Restores `records` (fd numbers as saved); warnings go to `warn`.
void restore(Captured& c, int warn) {
  CallerFds caller;
  int maxFd = 0;
  for (auto r : c.all()) maxFd = std::max(maxFd, r.getFd());
  RestoreContext ctx{c.all(), maxFd, warn, nullptr, caller, {}};
  for (auto r : c.all()) kindOf(r.getKind()).restore(r, ctx);
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

int intOpt(int fd, int level, int name) { return sockets::intOption(fd, level, name, -1); }

TEST_CASE("a listening TCP socket: saved with its address, backlog and the options it set; back listening") {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(l >= 0);
  int one = 1;
  REQUIRE(setsockopt(l, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0);
  REQUIRE(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
  sockaddr_in a = loopback(0);
  REQUIRE(bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(listen(l, 7) == 0);
  socklen_t len = sizeof(a);
  REQUIRE(getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) == 0);

  auto c = capture({l});
  REQUIRE(c->error == "");
  auto r = c->at(l);
  CHECK(r.getKind() == K::INET_SOCKET);
  auto s = r.getSocket();
  CHECK(s.getState() == State::LISTENING);
  CHECK(s.getBacklog() == 7);
  CHECK(sockets::describe(s.getLocal()) == kj::str("127.0.0.1:", ntohs(a.sin_port)));
  kj::Vector<int> names;
  for (auto o : s.getOptions()) names.add(o.getName());
  CHECK(names.size() == 2);  // TCP_NODELAY, SO_REUSEADDR; not the kernel's own buffer sizes
  CHECK(c->warnings.size() == 0);

  const int target = l;
  REQUIRE(close(l) == 0);  // the checkpointed process ended
  restore(*c, 2);
  sockaddr_in now{};
  len = sizeof(now);
  REQUIRE(getsockname(target, reinterpret_cast<sockaddr*>(&now), &len) == 0);
  CHECK(now.sin_port == a.sin_port);
  CHECK(intOpt(target, SOL_SOCKET, SO_ACCEPTCONN) == 1);
  CHECK(intOpt(target, IPPROTO_TCP, TCP_NODELAY) == 1);
  CHECK(intOpt(target, SOL_SOCKET, SO_REUSEADDR) == 1);
  int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(connect(client, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  int accepted = accept4(target, nullptr, nullptr, SOCK_CLOEXEC);
  CHECK(accepted >= 0);

  SUBCASE("a connection is warned about, naming fd and peer, and comes back reset") {
    auto held = capture({target, client, accepted});
    REQUIRE(held->error == "");
    REQUIRE(held->warnings.size() == 2);
    sockaddr_in cl{};
    len = sizeof(cl);
    REQUIRE(getsockname(client, reinterpret_cast<sockaddr*>(&cl), &len) == 0);
    CHECK(held->warnings[1] ==
          kj::str("fd ", accepted, ": TCP connection 127.0.0.1:", ntohs(a.sin_port),
                  " -> 127.0.0.1:", ntohs(cl.sin_port),
                  " is not saved; a restart finds it reset by the peer (and --stop resets it for the peer)"));
    CHECK(held->at(accepted).getSocket().getState() == State::CONNECTED);
    // Restored alone (the listener stays as it is): a socket a reset ended.
    CallerFds caller;
    RestoreContext ctx{held->all(), accepted, 2, nullptr, caller, {}};
    kindOf(K::INET_SOCKET).restore(held->at(accepted), ctx);
    char b;
    CHECK(read(accepted, &b, 1) == -1);
    CHECK(errno == ECONNRESET);
    CHECK(read(accepted, &b, 1) == 0);
  }
  SUBCASE("a socket whose connection a reset ended is no connection: no warning, restored without failing") {
    struct linger lg = {1, 0};
    REQUIRE(setsockopt(accepted, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
    REQUIRE(close(accepted) == 0);
    char b;
    REQUIRE(read(client, &b, 1) == -1);  // ECONNRESET: the client's socket is closed now
    accepted = -1;
    auto ended = capture({client});
    REQUIRE(ended->error == "");
    CHECK(ended->warnings.size() == 0);
    CHECK(ended->at(client).getSocket().getState() != State::CONNECTED);
    int pipeFds[2];
    REQUIRE(pipe2(pipeFds, O_CLOEXEC) == 0);
    CallerFds caller;
    RestoreContext ctx{ended->all(), client, pipeFds[1], nullptr, caller, {}};
    kindOf(K::INET_SOCKET).restore(ended->at(client), ctx);
    CHECK(intOpt(client, SOL_SOCKET, SO_TYPE) == SOCK_STREAM);
    close(pipeFds[0]);
    close(pipeFds[1]);
  }
  for (int fd : {client, accepted, target}) {
    if (fd >= 0) close(fd);
  }
}

TEST_CASE("what an image cannot hold is warned about: the accept queue, queued datagrams") {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0);
  REQUIRE(bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(listen(l, 4) == 0);
  socklen_t len = sizeof(a);
  REQUIRE(getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  int waiting = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(connect(waiting, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);  // never accepted

  int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in ua = loopback(0);
  REQUIRE(bind(u, reinterpret_cast<sockaddr*>(&ua), sizeof(ua)) == 0);
  len = sizeof(ua);
  REQUIRE(getsockname(u, reinterpret_cast<sockaddr*>(&ua), &len) == 0);
  REQUIRE(sendto(u, "lost", 4, 0, reinterpret_cast<sockaddr*>(&ua), sizeof(ua)) == 4);

  auto c = capture({l, u});
  REQUIRE(c->error == "");
  REQUIRE(c->warnings.size() == 2);
  CHECK(c->warnings[0] == kj::str("fd ", l, ": connections waiting to be accepted on 127.0.0.1:", ntohs(a.sin_port),
                                  " are not saved; after a restart their clients see a reset"));
  CHECK(c->warnings[1] == kj::str("fd ", u, ": datagrams waiting on UDP 127.0.0.1:", ntohs(ua.sin_port),
                                  " are not saved; a restart loses them"));
  CHECK(c->at(u).getSocket().getState() == State::BOUND);
  for (int fd : {l, waiting, u}) close(fd);
}

TEST_CASE("a socketpair: what waits on each end is saved, left in place, and back in order") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0);
  REQUIRE(send(sv[0], "one", 3, 0) == 3);
  REQUIRE(send(sv[0], "second", 6, 0) == 6);
  REQUIRE(send(sv[1], "back", 4, 0) == 4);

  auto c = capture({sv[0], sv[1]});
  REQUIRE(c->error == "");
  auto b = c->at(sv[1]).getSocket();
  CHECK(c->at(sv[1]).getKind() == K::UNIX_SOCKET);
  CHECK(b.getState() == State::CONNECTED);
  CHECK(b.getPeerInode() == c->at(sv[0]).getSocket().getInode());
  REQUIRE(b.getQueued().size() == 2);
  CHECK(b.getQueued()[0].size() == 3);
  CHECK(b.getQueued()[1].size() == 6);
  REQUIRE(c->at(sv[0]).getSocket().getQueued().size() == 1);

  char buf[16];
  CHECK(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT) == 3);  // still there: the checkpoint only peeked
  REQUIRE(close(sv[0]) == 0);
  REQUIRE(close(sv[1]) == 0);

  restore(*c, 2);
  CHECK(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT) == 3);
  CHECK(memcmp(buf, "one", 3) == 0);
  CHECK(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT) == 6);
  CHECK(memcmp(buf, "second", 6) == 0);
  CHECK(recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT) == 4);
  CHECK(send(sv[1], "x", 1, 0) == 1);  // still each other's peer
  CHECK(recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT) == 1);
  close(sv[0]);
  close(sv[1]);
}

TEST_CASE("on a hop a socketpair moves only in a family's tree image, whole, and only then is made anew") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  REQUIRE(send(sv[0], "one", 3, 0) == 3);
  REQUIRE(send(sv[0], "two two", 7, 0) == 7);
  const FdKind& kind = kindOf(K::UNIX_SOCKET);
  const bool hasHook = kind.movesWithTree != nullptr;
  REQUIRE(hasHook);

  // One process moving (or a tree image naming neither end): the socket stays at home.
  auto alone = capture({sv[0], sv[1]}, true);
  REQUIRE(alone->error == "");
  CHECK(alone->at(sv[1]).getKind() == K::UNIX_SOCKET);
  CHECK(alone->at(sv[1]).getSocket().getState() != State::CONNECTED);
  CHECK_FALSE(kind.movesWithTree(alone->at(sv[1])));
  const std::set<uint64_t> none;
  auto outside = capture({sv[0], sv[1]}, true, &none);
  CHECK_FALSE(kind.movesWithTree(outside->at(sv[1])));

  // Its ends held in the family: captured as at a checkpoint, boundaries kept.
  std::set<uint64_t> family;
  for (int fd : sv) {
    struct stat st {};
    REQUIRE(fstat(fd, &st) == 0);
    family.insert(kTreeSocket | st.st_ino);
  }
  auto moving = capture({sv[0], sv[1]}, true, &family);
  REQUIRE(moving->error == "");
  auto b = moving->at(sv[1]).getSocket();
  CHECK(b.getState() == State::CONNECTED);
  CHECK(b.getPeerInode() == moving->at(sv[0]).getSocket().getInode());
  REQUIRE(b.getQueued().size() == 2);
  CHECK(b.getQueued()[0].size() == 3);
  CHECK(b.getQueued()[1].size() == 7);
  CHECK(kind.movesWithTree(moving->at(sv[0])));
  CHECK(kind.movesWithTree(moving->at(sv[1])));
  close(sv[0]);
  close(sv[1]);
}

TEST_CASE("a socketpair with a file descriptor in flight is refused, naming the fd") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  int passed = sv[0];
  char data = 'x';
  REQUIRE(control::sendFd(sv[0], passed, &data, 1) == 1);
  auto c = capture({sv[0], sv[1]});
  std::string want = "fd " + std::to_string(sv[1]) + " is a socketpair with file descriptors in flight (SCM_RIGHTS)";
  CHECK(std::string(c->error.cStr()).find(want) != std::string::npos);
  close(sv[0]);
  close(sv[1]);
}

TEST_CASE("a Unix listener on a path: back on the path a restart finds left behind, never over a live one") {
  char dir[] = "/tmp/mig-socket-test-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  std::string path = std::string(dir) + "/s.sock";
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  memcpy(un.sun_path, path.c_str(), path.size() + 1);
  int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(bind(l, reinterpret_cast<sockaddr*>(&un), sizeof(un)) == 0);
  REQUIRE(listen(l, 3) == 0);
  auto c = capture({l});
  REQUIRE(c->error == "");
  CHECK(c->at(l).getSocket().getBacklog() == 3);
  CHECK(sockets::describe(c->at(l).getSocket().getLocal()) == path.c_str());

  // Still listening: a restart must not take the path.
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { restore(*c, 2); })) {
    CHECK(std::string(e->getDescription().cStr()).find("another process listens there") != std::string::npos);
  } else {
    FAIL("a restart took a path something listens on");
  }
  close(l);  // the file stays, nobody answers: taken back
  restore(*c, 2);
  CHECK(intOpt(l, SOL_SOCKET, SO_ACCEPTCONN) == 1);
  int client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(connect(client, reinterpret_cast<sockaddr*>(&un), sizeof(un)) == 0);
  close(client);
  close(l);
  unlink(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace mig::resources
