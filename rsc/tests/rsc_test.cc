// Remote system calls end to end in one process: the shim's encodeRequest, the
// deputy's Dispatcher::call and the shim's decodeReply, on real files, directories,
// pipes and fds in a temporary directory; then the table itself, and requests and
// replies that are malformed on purpose.
#include "image/image_test_util.h"
#include "rsc/dispatch.h"
#include "rsc/forward_table.h"
#include "rsc/marshal.h"
#include "rsc/payload.h"
#include "rsc/wire.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <initializer_list>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace mig::rsc {
namespace {

using image::testing::TempDir;

int64_t P(const void* p) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(p)); }

struct Outcome {
  int64_t result;
  int32_t error;
  size_t replySize;  // 0: no reply (kNoReply and success)
};

// Plays shim and deputy at once.
class Link {
 public:
  explicit Link(bool execute = true) : dispatcher_(execute) {}

  Outcome run(long sysno, std::initializer_list<int64_t> list, uint32_t flags = 0) {
    int64_t args[6] = {};
    int n = 0;
    for (int64_t a : list) args[n++] = a;
    const Row* row = findRow(sysno, args);
    REQUIRE(row != nullptr);
    return run(*row, args, flags);
  }

  Outcome run(const Row& row, const int64_t args[6], uint32_t flags = 0) {
    std::vector<uint8_t> request = encode(row, args, flags);
    kj::Array<kj::byte> reply = dispatcher_.call(kj::arrayPtr(request.data(), request.size()));
    if (reply.size() == 0) return {0, 0, 0};
    CHECK(reply.size() <= replyCapacity(row, args));
    int32_t error = -1;
    int64_t result = decodeReply(row, args, seq_, reply.begin(), reply.size(), &error);
    return {result, error, reply.size()};
  }

  std::vector<uint8_t> encode(const Row& row, const int64_t args[6], uint32_t flags = 0) {
    std::vector<uint8_t> request(kMaxMessage);
    int64_t n = encodeRequest(row, args, ++seq_, flags, request.data(), request.size());
    REQUIRE(n >= static_cast<int64_t>(sizeof(RequestHeader)));
    request.resize(static_cast<size_t>(n));
    return request;
  }

  Dispatcher& dispatcher() { return dispatcher_; }

 private:
  Dispatcher dispatcher_;
  uint64_t seq_ = 100;
};

std::string slurp(const std::string& path) {
  std::string s;
  int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return s;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::set<std::string> direntNames(const uint8_t* buf, int64_t len) {
  // linux_dirent64: d_ino(8) d_off(8) d_reclen(2) d_type(1) d_name
  std::set<std::string> names;
  int64_t off = 0;
  while (off < len) {
    uint16_t reclen;
    memcpy(&reclen, buf + off + 16, sizeof reclen);
    REQUIRE(reclen > 0);
    names.insert(reinterpret_cast<const char*>(buf + off + 19));
    off += reclen;
  }
  return names;
}

TEST_CASE("rsc: every row resolves in libc and is found by its system call") {
  for (uint32_t i = 0; i < rowCount(); ++i) {
    const Row& row = rowAt(i);
    CAPTURE(row.function);
    CHECK(dlsym(RTLD_DEFAULT, row.function) != nullptr);
    CHECK(rowById(static_cast<uint32_t>(row.id)) == &row);
    int64_t args[6] = {3, 0, 0, 0, 0, 0};
    if (row.selectorArg >= 0) args[row.selectorArg] = row.selector;
    // The shim's own questions share a number no kernel has: a trapped call with it
    // finds one of them, which runs here (ENOSYS); they are sent by id.
    if (row.locality == Locality::ShimsOwn) CHECK(findRow(row.sysno, args)->locality == Locality::ShimsOwn);
    else CHECK(findRow(row.sysno, args) == &row);
  }
  CHECK(rowById(0) == nullptr);
  CHECK(rowById(rowCount() + 1) == nullptr);

  int64_t lease[6] = {3, F_SETLEASE, 0, 0, 0, 0};
  CHECK(findRow(SYS_fcntl, lease) == nullptr);
  int64_t sti[6] = {0, TIOCSTI, 0, 0, 0, 0};
  CHECK(findRow(SYS_ioctl, sti) == nullptr);
  int64_t none[6] = {};
  CHECK(findRow(SYS_mmap, none) == nullptr);
  CHECK(findRow(SYS_execve, none) == nullptr);
  // ioctl requests and fcntl commands are their own rows.
  int64_t winsz[6] = {1, TIOCGWINSZ, 0, 0, 0, 0};
  int64_t tcgets[6] = {1, TCGETS, 0, 0, 0, 0};
  REQUIRE(findRow(SYS_ioctl, winsz) != nullptr);
  CHECK(findRow(SYS_ioctl, winsz)->id == CallId::IoctlTiocgwinsz);
  CHECK(findRow(SYS_ioctl, tcgets)->id == CallId::IoctlTcgets);
  // The kernel compares the request as 32 bits; so does the lookup.
  winsz[1] |= int64_t{1} << 40;
  CHECK(findRow(SYS_ioctl, winsz) != nullptr);
}

TEST_CASE("rsc: openat, write, pread64, lseek, read and close on a file") {
  TempDir dir;
  Link link;
  const std::string path = dir.file("data");
  Outcome o = link.run(SYS_openat, {AT_FDCWD, P(path.c_str()), O_RDWR | O_CREAT | O_TRUNC, 0640});
  REQUIRE(o.result >= 0);
  const int fd = static_cast<int>(o.result);

  const char text[] = "hello world";
  o = link.run(SYS_write, {fd, P(text), 11});
  CHECK(o.result == 11);
  CHECK(slurp(path) == "hello world");
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);

  char buf[64] = {};
  o = link.run(SYS_pread64, {fd, P(buf), 5, 6});
  CHECK(o.result == 5);
  CHECK(std::string(buf, 5) == "world");

  CHECK(link.run(SYS_lseek, {fd, 0, SEEK_CUR}).result == 11);
  CHECK(link.run(SYS_lseek, {fd, 2, SEEK_SET}).result == 2);

  // A large buffer: only the bytes read come back, and nothing past them is written.
  std::vector<uint8_t> big(kMaxIo, 0xAB);
  o = link.run(SYS_read, {fd, P(big.data()), static_cast<int64_t>(big.size())});
  CHECK(o.result == 9);
  CHECK(std::string(reinterpret_cast<char*>(big.data()), 9) == "llo world");
  CHECK(big[9] == 0xAB);
  CHECK(o.replySize == sizeof(ReplyHeader) + 8 + 16);
  CHECK(link.run(SYS_read, {fd, P(buf), sizeof buf}).result == 0);  // end of file

  CHECK(link.run(SYS_pwrite64, {fd, P("HE"), 2, 0}).result == 2);
  CHECK(slurp(path) == "HEllo world");
  CHECK(link.run(SYS_ftruncate, {fd, 5}).result == 0);
  CHECK(slurp(path) == "HEllo");
  CHECK(link.run(SYS_fsync, {fd}).result == 0);
  CHECK(link.run(SYS_fdatasync, {fd}).result == 0);
  CHECK(link.run(SYS_fchmod, {fd, 0600}).result == 0);
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  CHECK(link.run(SYS_close, {fd}).result == 0);
  CHECK(::fcntl(fd, F_GETFD) == -1);
}

TEST_CASE("rsc: fstat through newfstatat with AT_EMPTY_PATH, and statx") {
  TempDir dir;
  Link link;
  const std::string path = dir.file("f");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "12345", 5) == 5);

  struct stat remote;
  memset(&remote, 0x5A, sizeof remote);
  Outcome o = link.run(SYS_newfstatat, {fd, P(""), P(&remote), AT_EMPTY_PATH});
  CHECK(o.result == 0);
  CHECK(o.error == 0);
  struct stat local;
  REQUIRE(::fstat(fd, &local) == 0);
  CHECK(remote.st_dev == local.st_dev);
  CHECK(remote.st_ino == local.st_ino);
  CHECK(remote.st_mode == local.st_mode);
  CHECK(remote.st_size == 5);
  CHECK(remote.st_mtim.tv_sec == local.st_mtim.tv_sec);
  CHECK(remote.st_mtim.tv_nsec == local.st_mtim.tv_nsec);

  // By path, relative to a directory fd.
  int dfd = ::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY);
  REQUIRE(dfd >= 0);
  memset(&remote, 0, sizeof remote);
  CHECK(link.run(SYS_newfstatat, {dfd, P("f"), P(&remote), 0}).result == 0);
  CHECK(remote.st_ino == local.st_ino);

  struct statx sx;
  memset(&sx, 0, sizeof sx);
  CHECK(link.run(SYS_statx, {dfd, P("f"), 0, STATX_BASIC_STATS, P(&sx)}).result == 0);
  CHECK(sx.stx_ino == local.st_ino);
  CHECK(sx.stx_size == 5);

  o = link.run(SYS_newfstatat, {dfd, P("missing"), P(&remote), 0});
  CHECK(o.result == -1);
  CHECK(o.error == ENOENT);
  ::close(dfd);
  ::close(fd);
}

TEST_CASE("rsc: openat a directory and list it with getdents64") {
  TempDir dir;
  Link link;
  ::close(::open(dir.file("a").c_str(), O_CREAT | O_WRONLY, 0600));
  ::close(::open(dir.file("bb").c_str(), O_CREAT | O_WRONLY, 0600));
  REQUIRE(::mkdir(dir.file("sub").c_str(), 0700) == 0);

  Outcome o = link.run(SYS_openat, {AT_FDCWD, P(dir.path().c_str()), O_RDONLY | O_DIRECTORY, 0});
  REQUIRE(o.result >= 0);
  const int fd = static_cast<int>(o.result);
  std::vector<uint8_t> buf(8192);
  o = link.run(SYS_getdents64, {fd, P(buf.data()), static_cast<int64_t>(buf.size())});
  REQUIRE(o.result > 0);
  CHECK(direntNames(buf.data(), o.result) == std::set<std::string>{".", "..", "a", "bb", "sub"});
  CHECK(link.run(SYS_getdents64, {fd, P(buf.data()), static_cast<int64_t>(buf.size())}).result == 0);
  // Too small a buffer for one entry: the kernel's EINVAL comes home.
  CHECK(link.run(SYS_lseek, {fd, 0, SEEK_SET}).result == 0);
  o = link.run(SYS_getdents64, {fd, P(buf.data()), 8});
  CHECK(o.result == -1);
  CHECK(o.error == EINVAL);
  ::close(fd);
}

TEST_CASE("rsc: mkdirat, renameat, renameat2, unlinkat, faccessat and fchmodat change the disk") {
  TempDir dir;
  Link link;
  const std::string d = dir.file("d"), a = dir.file("a"), b = dir.file("b"), c = dir.file("c");

  CHECK(link.run(SYS_mkdirat, {AT_FDCWD, P(d.c_str()), 0700}).result == 0);
  struct stat st;
  REQUIRE(::stat(d.c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  Outcome o = link.run(SYS_mkdirat, {AT_FDCWD, P(d.c_str()), 0700});
  CHECK(o.result == -1);
  CHECK(o.error == EEXIST);

  ::close(::open(a.c_str(), O_CREAT | O_WRONLY, 0600));
  CHECK(link.run(SYS_renameat, {AT_FDCWD, P(a.c_str()), AT_FDCWD, P(b.c_str())}).result == 0);
  CHECK(!exists(a));
  CHECK(exists(b));
  ::close(::open(c.c_str(), O_CREAT | O_WRONLY, 0600));
  o = link.run(SYS_renameat2, {AT_FDCWD, P(b.c_str()), AT_FDCWD, P(c.c_str()), RENAME_NOREPLACE});
  CHECK(o.result == -1);
  CHECK(o.error == EEXIST);
  CHECK(link.run(SYS_renameat2, {AT_FDCWD, P(b.c_str()), AT_FDCWD, P(a.c_str()), 0}).result == 0);
  CHECK(exists(a));

  CHECK(link.run(SYS_faccessat, {AT_FDCWD, P(a.c_str()), F_OK, 0x7777}).result == 0);  // flags ignored
  CHECK(link.run(SYS_faccessat2, {AT_FDCWD, P(a.c_str()), R_OK, AT_EACCESS}).result == 0);
  o = link.run(SYS_faccessat, {AT_FDCWD, P(dir.file("nope").c_str()), F_OK});
  CHECK(o.error == ENOENT);

  CHECK(link.run(SYS_fchmodat, {AT_FDCWD, P(a.c_str()), 0604}).result == 0);
  REQUIRE(::stat(a.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0604);

  CHECK(link.run(SYS_unlinkat, {AT_FDCWD, P(a.c_str()), 0}).result == 0);
  CHECK(!exists(a));
  o = link.run(SYS_unlinkat, {AT_FDCWD, P(d.c_str()), 0});
  CHECK(o.error == EISDIR);
  CHECK(link.run(SYS_unlinkat, {AT_FDCWD, P(d.c_str()), AT_REMOVEDIR}).result == 0);
  CHECK(!exists(d));
  o = link.run(SYS_unlinkat, {AT_FDCWD, P(d.c_str()), AT_REMOVEDIR});
  CHECK(o.result == -1);
  CHECK(o.error == ENOENT);
}

TEST_CASE("rsc: readlinkat returns the target, truncated to the buffer") {
  TempDir dir;
  Link link;
  const std::string l = dir.file("link");
  REQUIRE(::symlink("some/target", l.c_str()) == 0);
  char buf[64];
  memset(buf, '#', sizeof buf);
  CHECK(link.run(SYS_readlinkat, {AT_FDCWD, P(l.c_str()), P(buf), sizeof buf}).result == 11);
  CHECK(std::string(buf, 11) == "some/target");
  CHECK(buf[11] == '#');  // readlink does not terminate, and neither do we
  memset(buf, '#', sizeof buf);
  CHECK(link.run(SYS_readlinkat, {AT_FDCWD, P(l.c_str()), P(buf), 4}).result == 4);
  CHECK(std::string(buf, 5) == "some#");
  Outcome o = link.run(SYS_readlinkat, {AT_FDCWD, P(dir.path().c_str()), P(buf), sizeof buf});
  CHECK(o.error == EINVAL);
}

TEST_CASE("rsc: ioctl and fcntl rows") {
  TempDir dir;
  Link link;
  int fd = ::open(dir.file("f").c_str(), O_RDWR | O_CREAT | O_APPEND, 0600);
  REQUIRE(fd >= 0);

  struct winsize ws;
  Outcome o = link.run(SYS_ioctl, {fd, TIOCGWINSZ, P(&ws)});
  CHECK(o.result == -1);
  CHECK(o.error == ENOTTY);
  uint8_t termios[36];
  o = link.run(SYS_ioctl, {fd, TCGETS, P(termios)});
  CHECK(o.error == ENOTTY);
  memset(termios, 0, sizeof termios);
  o = link.run(SYS_ioctl, {fd, TCSETS, P(termios)});
  CHECK(o.error == ENOTTY);

  int pipeFds[2];
  REQUIRE(::pipe(pipeFds) == 0);
  REQUIRE(::write(pipeFds[1], "12345", 5) == 5);
  int available = -1;
  CHECK(link.run(SYS_ioctl, {pipeFds[0], FIONREAD, P(&available)}).result == 0);
  CHECK(available == 5);

  o = link.run(SYS_fcntl, {fd, F_GETFL, 0});
  CHECK(o.result == ::fcntl(fd, F_GETFL));
  CHECK((o.result & O_APPEND) != 0);
  CHECK(link.run(SYS_fcntl, {fd, F_SETFL, O_NONBLOCK}).result == 0);
  CHECK((::fcntl(fd, F_GETFL) & (O_APPEND | O_NONBLOCK)) == O_NONBLOCK);
  CHECK(link.run(SYS_fcntl, {fd, F_GETFD, 0}).result == 0);
  CHECK(link.run(SYS_fcntl, {fd, F_SETFD, FD_CLOEXEC}).result == 0);
  CHECK(::fcntl(fd, F_GETFD) == FD_CLOEXEC);
  o = link.run(SYS_fcntl, {fd, F_DUPFD_CLOEXEC, 200});
  CHECK(o.result >= 200);
  CHECK(::fcntl(static_cast<int>(o.result), F_GETFD) == FD_CLOEXEC);
  ::close(static_cast<int>(o.result));
  o = link.run(SYS_fcntl, {fd, F_DUPFD, 300});
  CHECK(o.result >= 300);
  CHECK(::fcntl(static_cast<int>(o.result), F_GETFD) == 0);
  ::close(static_cast<int>(o.result));

  o = link.run(SYS_dup, {fd});
  REQUIRE(o.result >= 0);
  ::close(static_cast<int>(o.result));
  CHECK(link.run(SYS_dup3, {fd, 250, O_CLOEXEC}).result == 250);
  CHECK(::fcntl(250, F_GETFD) == FD_CLOEXEC);
  ::close(250);
  ::close(pipeFds[0]);
  ::close(pipeFds[1]);
  ::close(fd);
}

TEST_CASE("rsc: a TCP socket made, bound, connected, accepted and tuned at home") {
  Link link;
  Outcome o = link.run(SYS_socket, {AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0});
  REQUIRE(o.result >= 0);
  const int listener = static_cast<int>(o.result);
  struct sockaddr_in addr {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(link.run(SYS_bind, {listener, P(&addr), sizeof addr}).result == 0);
  CHECK(link.run(SYS_listen, {listener, 4}).result == 0);
  struct sockaddr_in bound {};
  socklen_t len = sizeof bound;
  REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &len) == 0);
  CHECK(bound.sin_port != 0);

  const int client = static_cast<int>(link.run(SYS_socket, {AF_INET, SOCK_STREAM, 0}).result);
  REQUIRE(client >= 0);
  CHECK(link.run(SYS_connect, {client, P(&bound), sizeof bound}).result == 0);
  o = link.run(SYS_accept4, {listener, 0, 0, SOCK_NONBLOCK});
  REQUIRE(o.result >= 0);
  const int served = static_cast<int>(o.result);
  CHECK((::fcntl(served, F_GETFL) & O_NONBLOCK) != 0);

  // getsockopt's value comes back whole (kSockoptSize), its length as the kernel says.
  int one = 1;
  CHECK(link.run(SYS_setsockopt, {client, IPPROTO_TCP, TCP_NODELAY, P(&one), sizeof one}).result == 0);
  uint8_t value[kSockoptSize] = {};
  socklen_t valueLen = sizeof value;
  CHECK(link.run(SYS_getsockopt, {client, IPPROTO_TCP, TCP_NODELAY, P(value), P(&valueLen)}).result == 0);
  CHECK(valueLen == sizeof(int));
  CHECK(*reinterpret_cast<int*>(value) == 1);
  valueLen = sizeof value;
  CHECK(link.run(SYS_getsockopt, {listener, SOL_SOCKET, SO_ACCEPTCONN, P(value), P(&valueLen)}).result == 0);
  CHECK(*reinterpret_cast<int*>(value) == 1);

  // FIONBIO turns non-blocking mode on and off, like F_SETFL.
  int on = 1, off = 0;
  CHECK(link.run(SYS_ioctl, {client, FIONBIO, P(&on)}).result == 0);
  CHECK((::fcntl(client, F_GETFL) & O_NONBLOCK) != 0);
  char buf[8];
  o = link.run(SYS_recvfrom, {client, P(buf), sizeof buf, 0, 0, 0});
  CHECK(o.error == EAGAIN);
  CHECK(link.run(SYS_ioctl, {client, FIONBIO, P(&off)}).result == 0);
  CHECK((::fcntl(client, F_GETFL) & O_NONBLOCK) == 0);

  CHECK(link.run(SYS_sendto, {served, P("ping"), 4, 0, 0, 0}).result == 4);
  CHECK(link.run(SYS_recvfrom, {client, P(buf), sizeof buf, 0, 0, 0}).result == 4);
  CHECK(std::string(buf, 4) == "ping");
  for (int fd : {served, client, listener}) ::close(fd);
}

TEST_CASE("rsc: the calls after which a home fd's readiness is told again") {
  std::set<std::string> input;
  for (uint32_t i = 0; i < rowCount(); ++i) {
    const Row& r = rowAt(i);
    CAPTURE(r.function);
    if (r.has(kTakesInput)) input.insert(r.function);
    if (r.has(kTakesInput)) CHECK(r.fdArg == 0);  // the shim drains the stand-in of argument 0
  }
  CHECK(input == std::set<std::string>{"read", "recvfrom", "accept", "accept4"});
}

TEST_CASE("rsc: read from a pipe") {
  Link link;
  int p[2];
  REQUIRE(::pipe(p) == 0);
  REQUIRE(::write(p[1], "abc", 3) == 3);
  char buf[100] = {};
  CHECK(link.run(SYS_read, {p[0], P(buf), sizeof buf}).result == 3);
  CHECK(std::string(buf) == "abc");
  ::close(p[1]);
  CHECK(link.run(SYS_read, {p[0], P(buf), sizeof buf}).result == 0);
  ::close(p[0]);
}

TEST_CASE("rsc: errors travel home: EBADF, ENOENT, EFAULT, ESRCH") {
  TempDir dir;
  Link link;
  int fd = ::open(dir.file("f").c_str(), O_RDWR | O_CREAT, 0600);
  REQUIRE(fd >= 0);
  ::close(fd);
  char buf[16];
  Outcome o = link.run(SYS_read, {fd, P(buf), sizeof buf});
  CHECK(o.result == -1);
  CHECK(o.error == EBADF);
  o = link.run(SYS_write, {fd, P("x"), 1});
  CHECK(o.error == EBADF);
  o = link.run(SYS_openat, {AT_FDCWD, P(dir.file("missing").c_str()), O_RDONLY, 0});
  CHECK(o.result == -1);
  CHECK(o.error == ENOENT);
  // A NULL path travels as NULL and meets the kernel's EFAULT.
  o = link.run(SYS_openat, {AT_FDCWD, 0, O_RDONLY, 0});
  CHECK(o.error == EFAULT);
  o = link.run(SYS_kill, {INT_MAX, 0});
  CHECK(o.error == ESRCH);
  CHECK(link.run(SYS_kill, {getpid(), 0}).result == 0);
  CHECK(link.run(SYS_getppid, {}).result == getppid());
}

TEST_CASE("rsc: getcwd keeps the system call's result, chdir and fchdir move the deputy") {
  TempDir dir;
  Link link;
  char before[PATH_MAX];
  REQUIRE(::getcwd(before, sizeof before) != nullptr);
  char buf[PATH_MAX];
  Outcome o = link.run(SYS_getcwd, {P(buf), sizeof buf});
  CHECK(o.result == static_cast<int64_t>(strlen(before) + 1));
  CHECK(std::string(buf) == before);
  o = link.run(SYS_getcwd, {P(buf), 2});
  CHECK(o.error == ERANGE);
  o = link.run(SYS_getcwd, {P(buf), 0});
  CHECK(o.error == ERANGE);
  o = link.run(SYS_getcwd, {0, 100});
  CHECK(o.error == EFAULT);

  CHECK(link.run(SYS_chdir, {P(dir.path().c_str())}).result == 0);
  char now[PATH_MAX];
  REQUIRE(::getcwd(now, sizeof now) != nullptr);
  CHECK(std::string(now) == dir.path());
  int home = ::open(before, O_RDONLY | O_DIRECTORY);
  REQUIRE(home >= 0);
  CHECK(link.run(SYS_fchdir, {home}).result == 0);
  REQUIRE(::getcwd(now, sizeof now) != nullptr);
  CHECK(std::string(now) == before);
  ::close(home);
  CHECK(link.run(SYS_chdir, {P(dir.file("missing").c_str())}).error == ENOENT);
}

TEST_CASE("rsc: kNoReply answers only failures") {
  TempDir dir;
  Link link;
  int fd = ::open(dir.file("f").c_str(), O_RDWR | O_CREAT, 0600);
  REQUIRE(fd >= 0);
  Outcome o = link.run(SYS_write, {fd, P("abc"), 3}, kNoReply);
  CHECK(o.replySize == 0);
  CHECK(slurp(dir.file("f")) == "abc");
  ::close(fd);
  o = link.run(SYS_write, {fd, P("abc"), 3}, kNoReply);
  CHECK(o.replySize == sizeof(ReplyHeader));
  CHECK(o.result == -1);
  CHECK(o.error == EBADF);
}

TEST_CASE("rsc: a pipelined write is finished even where the fd takes less at once") {
  // A non-blocking pipe holds 64 KiB: the write must wait for the reader, not end
  // short or with EAGAIN (nobody would hear of it).
  int p[2];
  REQUIRE(::pipe2(p, O_NONBLOCK) == 0);
  std::string data(300 * 1024, 'x');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 26);
  std::string got;
  std::thread reader([&]() {
    char buf[4096];
    while (got.size() < data.size()) {
      ssize_t n = ::read(p[0], buf, sizeof buf);
      if (n > 0) got.append(buf, static_cast<size_t>(n));
      else ::usleep(1000);
    }
  });
  Link link;
  Outcome o = link.run(SYS_write, {p[1], P(data.data()), static_cast<int64_t>(data.size())}, kNoReply);
  reader.join();
  CHECK(o.replySize == 0);
  CHECK(got == data);
  ::close(p[0]);
  ::close(p[1]);
}

TEST_CASE("rsc: only writes may be pipelined") {
  TempDir dir;
  Link link;
  int fd = ::open(dir.file("f").c_str(), O_RDWR | O_CREAT, 0600);
  REQUIRE(fd >= 0);
  Outcome o = link.run(SYS_ftruncate, {fd, 0}, kNoReply);
  CHECK(o.result == -1);
  CHECK(o.error == EPROTO);
  ::close(fd);
}

TEST_CASE("rsc: a validating-only dispatcher runs nothing") {
  TempDir dir;
  Link link(false);
  const std::string d = dir.file("d");
  CHECK(link.run(SYS_mkdirat, {AT_FDCWD, P(d.c_str()), 0700}).result == 0);
  CHECK(!exists(d));
  struct stat st;
  memset(&st, 0x11, sizeof st);
  CHECK(link.run(SYS_newfstatat, {0, P(""), P(&st), AT_EMPTY_PATH}).result == 0);
  CHECK(st.st_ino == 0);  // the zeroed struct came back
}

// --- malformed input -------------------------------------------------------------

struct Answer {
  int64_t result;
  int32_t error;
  uint64_t seq;
};

Answer answer(Dispatcher& d, const std::vector<uint8_t>& request) {
  kj::Array<kj::byte> reply = d.call(kj::arrayPtr(request.data(), request.size()));
  REQUIRE(reply.size() == sizeof(ReplyHeader));
  ReplyHeader h;
  memcpy(&h, reply.begin(), sizeof h);
  CHECK(h.magic == kReplyMagic);
  CHECK(h.length == sizeof(ReplyHeader));
  return {h.result, h.error, h.seq};
}

RequestHeader headerOf(const std::vector<uint8_t>& m) {
  RequestHeader h;
  memcpy(&h, m.data(), sizeof h);
  return h;
}

void setHeader(std::vector<uint8_t>& m, const RequestHeader& h) { memcpy(m.data(), &h, sizeof h); }

TEST_CASE("rsc: malformed requests get an error reply and run nothing") {
  TempDir dir;
  Link link;
  Dispatcher& d = link.dispatcher();
  const std::string path = dir.file("f");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0600);
  REQUIRE(fd >= 0);
  int64_t writeArgs[6] = {fd, P("hello"), 5, 0, 0, 0};
  const Row& writeRow = *rowById(static_cast<uint32_t>(CallId::Write));
  const std::vector<uint8_t> good = link.encode(writeRow, writeArgs);

  SUBCASE("every truncation") {
    for (size_t n = 0; n < good.size(); ++n) {
      std::vector<uint8_t> m(good.begin(), good.begin() + static_cast<long>(n));
      if (n >= sizeof(RequestHeader)) {  // keep the length field honest, still short
        RequestHeader h = headerOf(m);
        h.length = static_cast<uint32_t>(n);
        setHeader(m, h);
      }
      Answer a = answer(d, m);
      CHECK(a.result == -1);
      CHECK(a.error == EPROTO);
    }
    CHECK(slurp(path).empty());
  }
  SUBCASE("length field not the message size") {
    std::vector<uint8_t> m = good;
    m.push_back(0);
    Answer a = answer(d, m);
    CHECK(a.error == EPROTO);
    CHECK(a.seq == headerOf(good).seq);
  }
  SUBCASE("wrong magic") {
    std::vector<uint8_t> m = good;
    m[0] ^= 1;
    CHECK(answer(d, m).error == EPROTO);
  }
  SUBCASE("unknown flags") {
    std::vector<uint8_t> m = good;
    RequestHeader h = headerOf(m);
    h.flags = 0x80;
    setHeader(m, h);
    CHECK(answer(d, m).error == EPROTO);
  }
  SUBCASE("unknown call id") {
    for (uint32_t id : {0u, rowCount() + 1, 0xFFFFFFFFu}) {
      std::vector<uint8_t> m = good;
      RequestHeader h = headerOf(m);
      h.call = id;
      setHeader(m, h);
      CHECK(answer(d, m).error == ENOSYS);
    }
  }
  SUBCASE("InBuf length differs from its length argument") {
    for (int64_t len : {int64_t{4}, int64_t{6}, int64_t{-1}, int64_t{kMaxIo} + 1}) {
      std::vector<uint8_t> m = good;
      RequestHeader h = headerOf(m);
      h.args[2] = len;
      setHeader(m, h);
      CHECK(answer(d, m).error == EPROTO);
    }
  }
  SUBCASE("payload count beyond the message") {
    std::vector<uint8_t> m = good;
    storeU64(m.data() + sizeof(RequestHeader), UINT64_MAX - 3);
    CHECK(answer(d, m).error == EPROTO);
  }
  SUBCASE("non-zero padding") {
    std::vector<uint8_t> m = good;
    m.back() = 1;
    CHECK(answer(d, m).error == EPROTO);
  }
  SUBCASE("unterminated and embedded-NUL paths") {
    const std::string target = dir.file("new");
    int64_t args[6] = {AT_FDCWD, P(target.c_str()), 0700, 0, 0, 0};
    const Row& mkdirRow = *rowById(static_cast<uint32_t>(CallId::Mkdirat));
    const std::vector<uint8_t> ok = link.encode(mkdirRow, args);
    const size_t count = target.size() + 1;
    const size_t nul = sizeof(RequestHeader) + 8 + count - 1;
    REQUIRE(ok[nul] == 0);
    std::vector<uint8_t> m = ok;
    m[nul] = 'x';
    CHECK(answer(d, m).error == EPROTO);
    m = ok;
    m[nul - 2] = 0;
    CHECK(answer(d, m).error == EPROTO);
    m = ok;
    storeU64(m.data() + sizeof(RequestHeader), 0);  // an empty payload is no string
    CHECK(answer(d, m).error == EPROTO);
    CHECK(!exists(target));
  }
  SUBCASE("huge OutBuf length") {
    char buf[16];
    int64_t args[6] = {fd, P(buf), sizeof buf, 0, 0, 0};
    const Row& readRow = *rowById(static_cast<uint32_t>(CallId::Read));
    std::vector<uint8_t> m = link.encode(readRow, args);
    for (int64_t len : {int64_t{kMaxIo} + 1, int64_t{-1}, INT64_MAX}) {
      RequestHeader h = headerOf(m);
      h.args[2] = len;
      setHeader(m, h);
      CHECK(answer(d, m).error == EPROTO);
    }
    // The shim's encoder refuses the same thing, so it splits before sending.
    args[2] = int64_t{kMaxIo} + 1;
    uint8_t out[sizeof(RequestHeader)];
    CHECK(encodeRequest(readRow, args, 1, 0, out, sizeof out) == -E2BIG);
  }
  SUBCASE("a row's request must carry the row's ioctl request") {
    struct winsize ws;
    int64_t args[6] = {fd, TIOCGWINSZ, P(&ws), 0, 0, 0};
    const Row& row = *findRow(SYS_ioctl, args);
    std::vector<uint8_t> m = link.encode(row, args);
    RequestHeader h = headerOf(m);
    h.args[1] = TIOCSTI;
    setHeader(m, h);
    CHECK(answer(d, m).error == EPROTO);
  }
  SUBCASE("struct payload of the wrong size") {
    uint8_t termios[36] = {};
    int64_t args[6] = {fd, TCSETS, P(termios), 0, 0, 0};
    const Row& row = *findRow(SYS_ioctl, args);
    std::vector<uint8_t> m = link.encode(row, args);
    storeU64(m.data() + sizeof(RequestHeader), 32);
    CHECK(answer(d, m).error == EPROTO);
  }
  ::close(fd);
}

TEST_CASE("rsc: random requests never crash the dispatcher") {
  Dispatcher d(false);
  uint64_t state = 0x9E3779B97F4A7C15u;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  std::vector<uint8_t> m;
  for (int round = 0; round < 20000; ++round) {
    m.resize(sizeof(RequestHeader) + next() % 256);
    for (auto& b : m) b = static_cast<uint8_t>(next());
    RequestHeader h = headerOf(m);
    h.magic = kRequestMagic;
    h.length = static_cast<uint32_t>(m.size());
    h.call = static_cast<uint32_t>(next() % (rowCount() + 2));
    h.flags &= kNoReply;
    for (auto& a : h.args) a = static_cast<int64_t>(next() % 64);
    setHeader(m, h);
    kj::Array<kj::byte> reply = d.call(kj::arrayPtr(m.data(), m.size()));
    if (reply.size() == 0) continue;
    REQUIRE(reply.size() >= sizeof(ReplyHeader));
    ReplyHeader r;
    memcpy(&r, reply.begin(), sizeof r);
    REQUIRE(r.magic == kReplyMagic);
    REQUIRE(r.length == reply.size());
  }
}

// --- the shim's side alone ------------------------------------------------------

TEST_CASE("rsc: encodeRequest limits") {
  const Row& mkdirRow = *rowById(static_cast<uint32_t>(CallId::Mkdirat));
  std::string longPath(kMaxPath, 'a');
  int64_t args[6] = {AT_FDCWD, P(longPath.c_str()), 0700, 0, 0, 0};
  std::vector<uint8_t> buf(kMaxMessage);
  CHECK(encodeRequest(mkdirRow, args, 1, 0, buf.data(), buf.size()) == -ENAMETOOLONG);
  longPath.resize(kMaxPath - 1);
  args[1] = P(longPath.c_str());
  CHECK(encodeRequest(mkdirRow, args, 1, 0, buf.data(), buf.size()) ==
        static_cast<int64_t>(sizeof(RequestHeader) + 8 + kMaxPath));
  CHECK(encodeRequest(mkdirRow, args, 1, 0, buf.data(), sizeof(RequestHeader) + 8) == -E2BIG);
  CHECK(encodeRequest(mkdirRow, args, 1, 0, buf.data(), 10) == -E2BIG);

  const Row& writeRow = *rowById(static_cast<uint32_t>(CallId::Write));
  int64_t w[6] = {1, 0, 5, 0, 0, 0};
  CHECK(encodeRequest(writeRow, w, 1, 0, buf.data(), buf.size()) == -EFAULT);
  std::vector<uint8_t> data(kMaxIo + 1);
  w[1] = P(data.data());
  w[2] = static_cast<int64_t>(kMaxIo);
  CHECK(encodeRequest(writeRow, w, 1, 0, buf.data(), buf.size()) ==
        static_cast<int64_t>(sizeof(RequestHeader) + 8 + kMaxIo));
  w[2] = static_cast<int64_t>(kMaxIo) + 1;
  CHECK(encodeRequest(writeRow, w, 1, 0, buf.data(), buf.size()) == -E2BIG);
}

TEST_CASE("rsc: decodeReply rejects malformed replies without touching the buffers") {
  TempDir dir;
  Link link;
  int fd = ::open(dir.file("f").c_str(), O_RDWR | O_CREAT, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "abcdefgh", 8) == 8);
  char buf[8];
  int64_t args[6] = {fd, P(buf), 8, 0, 0, 0};
  const Row& row = *rowById(static_cast<uint32_t>(CallId::Pread64));
  std::vector<uint8_t> request = link.encode(row, args);
  const uint64_t seq = headerOf(request).seq;
  kj::Array<kj::byte> reply = link.dispatcher().call(kj::arrayPtr(request.data(), request.size()));
  const std::vector<uint8_t> good(reply.begin(), reply.end());
  ::close(fd);

  auto decode = [&](const std::vector<uint8_t>& m, uint64_t withSeq) {
    memset(buf, '#', sizeof buf);
    int32_t error = 0;
    int64_t r = decodeReply(row, args, withSeq, m.data(), m.size(), &error);
    return std::make_pair(r, error);
  };
  CHECK(decode(good, seq) == std::make_pair(int64_t{8}, 0));
  CHECK(std::string(buf, 8) == "abcdefgh");

  const auto eio = std::make_pair(int64_t{-1}, EIO);
  CHECK(decode(good, seq + 1) == eio);
  CHECK(std::string(buf, 8) == "########");
  for (size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> m(good.begin(), good.begin() + static_cast<long>(n));
    CHECK(decode(m, seq) == eio);
  }
  std::vector<uint8_t> m = good;
  m[0] ^= 1;
  CHECK(decode(m, seq) == eio);
  m = good;
  storeU64(m.data() + sizeof(ReplyHeader), 9);  // more than the request's buffer
  CHECK(decode(m, seq) == eio);
  CHECK(std::string(buf, 8) == "########");
  m = good;
  ReplyHeader h;
  memcpy(&h, m.data(), sizeof h);
  h.result = 7;  // payload no longer matches the result
  memcpy(m.data(), &h, sizeof h);
  CHECK(decode(m, seq) == eio);
  h.result = -1;  // failure without an errno
  h.error = 0;
  memcpy(m.data(), &h, sizeof h);
  CHECK(decode(m, seq) == eio);
  h.result = -5;
  h.error = EBADF;
  memcpy(m.data(), &h, sizeof h);
  CHECK(decode(m, seq) == eio);
  CHECK(std::string(buf, 8) == "########");
}

int g_keptFd = -1;
bool keptFd(int64_t fd) { return fd == g_keptFd; }

TEST_CASE("rsc: fds the deputy keeps for itself are never replaced or closed by the job's calls") {
  Link link;
  int mine = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int other = ::open("/dev/zero", O_RDONLY | O_CLOEXEC);
  REQUIRE(mine >= 0);
  REQUIRE(other >= 0);
  g_keptFd = mine;
  link.dispatcher().keepOwnFds(keptFd);
  struct stat before {}, after {};
  REQUIRE(::fstat(mine, &before) == 0);
  Outcome o = link.run(SYS_dup3, {other, mine, 0});
  CHECK(o.result == -1);
  CHECK(o.error == EMFILE);  // as a full table would answer
  o = link.run(SYS_close, {mine});
  CHECK(o.result == -1);
  CHECK(o.error == EBADF);  // the job never had it
  REQUIRE(::fstat(mine, &after) == 0);
  CHECK(after.st_ino == before.st_ino);  // still ours, still /dev/null
  // Other numbers are the job's as before.
  o = link.run(SYS_dup3, {mine, other, 0});
  CHECK(o.result == other);
  CHECK(link.run(SYS_close, {other}).result == 0);
  g_keptFd = -1;
  ::close(mine);
}

}  // namespace
}  // namespace mig::rsc
