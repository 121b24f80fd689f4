// See rebind.h. Raw system calls and static buffers only: it runs while the
// application's threads are parked wherever they were (a lock of libc's may be held).
#include "shim/forward/rebind.h"

#include "shim/forward/state.h"
#include "shim/forward/trapped_call.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

namespace mig::forward {
namespace {

using shim::rawSyscall;

State& state() { return shim::g_runtime.forward; }

// An int-valued option of home socket fd (negative errno if it is none).
long homeIntOption(int32_t fd, int level, int name) {
  int value[rsc::kSockoptSize / sizeof(int)] = {};  // the row's whole value comes back
  socklen_t len = sizeof(value);
  const int64_t args[6] = {fd, level, name, reinterpret_cast<int64_t>(value), reinterpret_cast<int64_t>(&len), 0};
  long r = forwardRow(*rsc::rowById(static_cast<uint32_t>(rsc::CallId::Getsockopt)), args);
  return r < 0 ? r : value[0];
}

// --- the epoll registrations of an fd, from /proc/self/fdinfo --------------------

struct Registration {
  int32_t epfd;
  uint32_t events;
  uint64_t data;
};
constexpr int kMaxRegistrations = 16;

char g_text[1 << 16];  // one fdinfo file at a time

const char* skipTo(const char* p, const char* end, const char* word) {
  for (; p < end; ++p) {
    const char* w = word;
    const char* q = p;
    while (*w != '\0' && q < end && *q == *w) ++q, ++w;
    if (*w == '\0') return q;
  }
  return nullptr;
}

uint64_t number(const char*& p, const char* end, int base) {
  while (p < end && *p == ' ') ++p;
  uint64_t v = 0;
  for (; p < end; ++p) {
    int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
    if (d < 0 || d >= base) break;
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
  }
  return v;
}

void decimal(char* out, int v) {
  char tmp[12];
  int n = 0;
  do tmp[n++] = static_cast<char>('0' + v % 10);
  while ((v /= 10) > 0);
  while (n > 0) *out++ = tmp[--n];
  *out = '\0';
}

bool isEpoll(int32_t fd) {
  char path[40] = "/proc/self/fd/";
  decimal(path + 14, fd);
  char target[32];
  long n = rawSyscall(SYS_readlinkat, AT_FDCWD, reinterpret_cast<long>(path), reinterpret_cast<long>(target),
                      sizeof(target));
  const char want[] = "anon_inode:[eventpoll]";
  if (n != static_cast<long>(sizeof(want) - 1)) return false;
  for (long i = 0; i < n; ++i) {
    if (target[i] != want[i]) return false;
  }
  return true;
}

// The registrations of `fd` in epoll `epfd`, added to `out` (up to kMaxRegistrations).
void registrationsIn(int32_t epfd, int32_t fd, Registration* out, int& count) {
  char path[40] = "/proc/self/fdinfo/";
  decimal(path + 18, epfd);
  long f = rawSyscall(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_RDONLY | O_CLOEXEC);
  if (f < 0) return;
  long size = 0;
  for (long n; size < static_cast<long>(sizeof(g_text)) &&
               (n = rawSyscall(SYS_read, f, reinterpret_cast<long>(g_text + size), sizeof(g_text) - size)) > 0;) {
    size += n;
  }
  rawSyscall(SYS_close, f);
  const char* end = g_text + (size > 0 ? size : 0);
  for (const char* p = g_text; (p = skipTo(p, end, "tfd:")) != nullptr && count < kMaxRegistrations;) {
    if (static_cast<int32_t>(number(p, end, 10)) != fd) continue;
    const char* e = skipTo(p, end, "events:");
    const char* d = e ? skipTo(e, end, "data:") : nullptr;
    if (d == nullptr) break;
    out[count++] = {epfd, static_cast<uint32_t>(number(e, end, 16)), number(d, end, 16)};
    p = d;
  }
}

// --- the sockets -----------------------------------------------------------------

// A listening socket here like the one at home: same family, same port, every address.
long listenerLike(int32_t homeFd, int domain) {
  struct sockaddr_storage name {};
  socklen_t len = sizeof(name);
  if (forwardSyscall(SYS_getsockname, homeFd, reinterpret_cast<int64_t>(&name), reinterpret_cast<int64_t>(&len)) < 0) {
    return -EIO;
  }
  struct sockaddr_storage any {};
  any.ss_family = static_cast<sa_family_t>(domain);
  if (domain == AF_INET) {
    reinterpret_cast<sockaddr_in&>(any).sin_port = reinterpret_cast<sockaddr_in&>(name).sin_port;
  } else {
    reinterpret_cast<sockaddr_in6&>(any).sin6_port = reinterpret_cast<sockaddr_in6&>(name).sin6_port;
  }
  long s = rawSyscall(SYS_socket, domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return s;
  int one = 1;
  rawSyscall(SYS_setsockopt, s, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<long>(&one), sizeof(one));
  long r = rawSyscall(SYS_bind, s, reinterpret_cast<long>(&any),
                      domain == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
  if (r == 0) r = rawSyscall(SYS_listen, s, SOMAXCONN);
  if (r < 0) {
    rawSyscall(SYS_close, s);
    return r;
  }
  return s;
}

// A connection that has ended: end of file to reads, EPIPE to writes.
long endedConnection() {
  int sv[2];
  long r = rawSyscall(SYS_socketpair, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, reinterpret_cast<long>(sv));
  if (r < 0) return r;
  rawSyscall(SYS_close, sv[1]);
  return sv[0];
}

// What a stand-in became, so the fds that share it share its successor.
struct Taken {
  uint64_t standIn;  // inode of the stand-in
  int32_t fd;        // the fd that now holds the successor
};
constexpr int kMaxTaken = 256;
Taken g_taken[kMaxTaken];
int g_takenCount;

uint64_t inodeOf(int32_t fd) {
  struct stat st {};
  return rawSyscall(SYS_fstat, fd, reinterpret_cast<long>(&st)) == 0 ? st.st_ino : 0;
}

// Puts `successor` in place of home fd `fd`: the home side closed, the epoll
// registrations and close-on-exec kept.
void replace(int32_t fd, long successor, int32_t maxFd) {
  State& s = state();
  Registration regs[kMaxRegistrations];
  int count = 0;
  for (int32_t e = 0; e <= maxFd; ++e) {
    if (e != fd && rawSyscall(SYS_fcntl, e, F_GETFD) >= 0 && isEpoll(e)) registrationsIn(e, fd, regs, count);
  }
  const bool cloexec = rawSyscall(SYS_fcntl, fd, F_GETFD) & FD_CLOEXEC;
  forwardSyscall(SYS_close, fd);
  setForwardedFd(s, fd, false);
  rawSyscall(SYS_dup3, successor, fd, cloexec ? O_CLOEXEC : 0);
  for (int i = 0; i < count; ++i) {
    struct epoll_event ev {};
    ev.events = regs[i].events;
    ev.data.u64 = regs[i].data;
    rawSyscall(SYS_epoll_ctl, regs[i].epfd, EPOLL_CTL_ADD, fd, reinterpret_cast<long>(&ev));
  }
}

void rebindOne(int32_t fd, int32_t maxFd) {
  const uint64_t standIn = inodeOf(fd);
  for (int i = 0; i < g_takenCount; ++i) {
    if (standIn != 0 && g_taken[i].standIn == standIn) {  // a copy of one done already
      replace(fd, g_taken[i].fd, maxFd);
      return;
    }
  }
  const long domain = homeIntOption(fd, SOL_SOCKET, SO_DOMAIN);
  if ((domain != AF_INET && domain != AF_INET6) || homeIntOption(fd, SOL_SOCKET, SO_TYPE) != SOCK_STREAM) return;
  const bool listening = homeIntOption(fd, SOL_SOCKET, SO_ACCEPTCONN) == 1;
  const long flags = forwardSyscall(SYS_fcntl, fd, F_GETFL);
  long successor = listening ? listenerLike(fd, static_cast<int>(domain)) : endedConnection();
  if (successor < 0) return;  // it stays at home, working as before
  if (flags >= 0 && (flags & O_NONBLOCK)) rawSyscall(SYS_fcntl, successor, F_SETFL, O_NONBLOCK);
  if (!listening) {
    struct linger reset = {1, 0};  // the close at home resets the connection
    const int64_t args[6] = {fd, SOL_SOCKET, SO_LINGER, reinterpret_cast<int64_t>(&reset), sizeof(reset), 0};
    forwardRow(*rsc::rowById(static_cast<uint32_t>(rsc::CallId::Setsockopt)), args);
  }
  replace(fd, successor, maxFd);
  rawSyscall(SYS_close, successor);
  if (g_takenCount < kMaxTaken && standIn != 0) g_taken[g_takenCount++] = {standIn, fd};
}

}  // namespace

void rebindSockets() {
  State& s = state();
  int32_t maxFd = -1;
  for (int32_t fd = 0; fd < static_cast<int32_t>(kMaxFds); ++fd) {
    if (rawSyscall(SYS_fcntl, fd, F_GETFD) >= 0) maxFd = fd;
  }
  g_takenCount = 0;
  for (int32_t fd = 0; fd <= maxFd; ++fd) {
    if (isForwardedFd(s, fd) && isStreamFd(s, fd)) rebindOne(fd, maxFd);
  }
}

}  // namespace mig::forward
