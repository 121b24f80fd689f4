// See rebind.h. Raw system calls and no allocation: it runs while the application's
// threads are parked wherever they were (a lock of libc's may be held).
#include "shim/forward/rebind.h"

#include "shim/forward/state.h"
#include "shim/forward/trapped_call.h"
#include "shim/proc_dir.h"
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
  int value = 0;
  socklen_t len = sizeof(value);
  const int64_t args[6] = {fd, level, name, reinterpret_cast<int64_t>(&value), reinterpret_cast<int64_t>(&len), 0};
  long r = homeSocketRow(rsc::rowOf(rsc::CallId::Getsockopt), args, args);
  return r < 0 ? r : value;
}

// --- the epoll registrations of an fd, from /proc/self/fdinfo --------------------

struct Registration {
  int32_t epfd;
  uint32_t events;
  uint64_t data;
};
constexpr int kMaxRegistrations = 16;

// The process's epoll fds, listed once for all the sockets taken over.
struct Epolls {
  static constexpr int kMax = 64;
  int32_t fd[kMax];
  int count = 0;
};

Epolls findEpolls() {
  Epolls e;
  shim::forEachNumberedEntry("/proc/self/fd", [&](int fd, int dir) {
    char name[12], target[32];
    shim::putDecimal(name, static_cast<uint32_t>(fd));
    const long n = rawSyscall(SYS_readlinkat, dir, reinterpret_cast<long>(name), reinterpret_cast<long>(target),
                              sizeof(target));
    const char want[] = "anon_inode:[eventpoll]";
    if (fd != dir && n == static_cast<long>(sizeof(want) - 1) && __builtin_memcmp(target, want, n) == 0 &&
        e.count < Epolls::kMax) {
      e.fd[e.count++] = fd;
    }
  });
  return e;
}

// The hexadecimal number after `key` somewhere in line (0 if none).
uint64_t hexAfter(const char* line, const char* key) {
  const char* p = __builtin_strstr(line, key);
  if (p == nullptr) return 0;
  p += __builtin_strlen(key);
  while (*p == ' ') ++p;
  uint64_t v = 0;
  for (;; ++p) {
    const int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
    if (d < 0) return v;
    v = v * 16 + static_cast<uint64_t>(d);
  }
}

// The registrations of `fd` in epoll `epfd` ("tfd: N events: HEX data: HEX ..."
// lines), added to `out` (up to kMaxRegistrations).
void registrationsIn(int32_t epfd, int32_t fd, Registration* out, int& count) {
  char path[40] = "/proc/self/fdinfo/";
  shim::putDecimal(path + 18, static_cast<uint32_t>(epfd));
  shim::forEachLine(path, [&](const char* line) {
    int64_t tfd;
    if (shim::numberAfter(line, "tfd:", tfd) && tfd == fd) {
      out[count++] = {epfd, static_cast<uint32_t>(hexAfter(line, "events:")), hexAfter(line, "data:")};
    }
    return count < kMaxRegistrations;
  });
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
void replace(int32_t fd, long successor, const Epolls& epolls) {
  State& s = state();
  Registration regs[kMaxRegistrations];
  int count = 0;
  for (int i = 0; i < epolls.count && count < kMaxRegistrations; ++i) registrationsIn(epolls.fd[i], fd, regs, count);
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

void rebindOne(int32_t fd, const Epolls& epolls) {
  const uint64_t standIn = inodeOf(fd);
  for (int i = 0; i < g_takenCount; ++i) {
    if (standIn != 0 && g_taken[i].standIn == standIn) {  // a copy of one done already
      replace(fd, g_taken[i].fd, epolls);
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
    forwardRow(rsc::rowOf(rsc::CallId::Setsockopt), args);
  }
  replace(fd, successor, epolls);
  rawSyscall(SYS_close, successor);
  if (g_takenCount < kMaxTaken && standIn != 0) g_taken[g_takenCount++] = {standIn, fd};
}

}  // namespace

void rebindSockets() {
  State& s = state();
  const Epolls epolls = findEpolls();
  g_takenCount = 0;
  for (int32_t fd = 0; fd < static_cast<int32_t>(kMaxFds); ++fd) {
    if (isForwardedFd(s, fd) && isStreamFd(s, fd)) rebindOne(fd, epolls);
  }
}

}  // namespace mig::forward
