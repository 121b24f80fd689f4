// The program's calls that would take or close one of the shim's own fds (own_fds.h):
// the control sockets (migctl's connection too), the control thread's wake eventfd and
// the MIG_LOG file. A dup2/dup3 onto one moves ours to another number first (the
// control thread is woken to poll the new numbers before the program's call goes on),
// then the call proceeds as the program asked; a close of one is a no-op for the
// program, which never had it; a close_range/closefrom closes around ours; a
// setrlimit/prlimit that lowers RLIMIT_NOFILE under ours moves them under the new
// limit first (refused, EMFILE, only if they cannot fit). After a move the same calls
// reach the SIGSYS handler too (shim/forward/fd_mirror.cc), which moves or keeps the
// relay connections alike. The control thread's fds are among them only while it
// shares the program's table (Runtime::controlOwnTable false); in a table of its own
// they are not the program's business, and the same numbers in the program's table
// are the program's.
#include "shim/own_fds.h"

#include "shim/real_function.h"
#include "shim/runtime.h"

#include <cerrno>
#include <dlfcn.h>
#include <ctime>
#include <linux/close_range.h>
#include <sys/resource.h>
#include <unistd.h>

using namespace mig::shim;

namespace {

bool isShimFd(long fd) {
  const Runtime& rt = g_runtime;
  // vpid: before the constructor ran, the fields are zeros, not fds.
  if (fd < 0 || rt.vpid == 0) return false;
  if (fd == rt.logFd - 1) return true;
  return !rt.controlOwnTable &&
         (fd == rt.controlListen || fd == rt.controlAlias || fd == rt.controlConn || fd == rt.controlWake - 1);
}

// Moves our fd `fd` to the highest free number (copyOwnFd; the program's call then
// takes the number), or to `floor` and up; returns false if there is no room.
bool moveAside(int fd, long floor = -1) {
  Runtime& rt = g_runtime;
  const long moved = floor >= 0 ? rawSyscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, floor) : copyOwnFd(fd);
  if (moved < 0) return false;  // no room: the program's call goes on and ours is gone
                                // (the control thread then listens anew; MIG_LOG stops)
  const int n = static_cast<int>(moved);
  if (fd == rt.logFd - 1) {
    rt.logFd = n + 1;
    return true;
  }
  if (fd == rt.controlConn) {
    // migctl's connection, in use by the control thread, which takes the number from
    // here at each call: the one in flight finishes on the socket it started on.
    rt.controlConn = n;
    return true;
  }
  const bool polled = fd == rt.controlListen || fd == rt.controlAlias || fd == rt.controlWake - 1;
  const uint32_t loops = rt.controlLoops.load(std::memory_order_acquire);
  if (fd == rt.controlListen) rt.controlListen = n;
  else if (fd == rt.controlAlias) rt.controlAlias = n;
  else rt.controlWake = n + 1;
  if (!polled || rt.controlWake == 0) return true;
  // Wake the control thread (the eventfd is the same file under either number) and wait
  // until it polls again with the new numbers: from then on the old one may be the
  // program's. Bounded: a control thread busy with a checkpoint re-reads them anyway.
  const uint64_t one = 1;
  rawSyscall(SYS_write, rt.controlWake - 1, reinterpret_cast<long>(&one), sizeof(one));
  for (int i = 0; i < 2000 && rt.controlLoops.load(std::memory_order_acquire) == loops; ++i) {
    struct timespec ms = {0, 1000000};
    rawSyscall(SYS_nanosleep, reinterpret_cast<long>(&ms), 0);
  }
  return true;
}

// The program lowers its fd limit to `soft`: ours at or above it move under it, as
// high as they fit (the band under the new limit), and the old numbers are closed
// (the program can never get them again). False (nothing moved) if they do not fit.
bool makeRoomUnder(rlim_t soft) {
  Runtime& rt = g_runtime;
  if (rt.vpid == 0) return true;
  const bool shared = !rt.controlOwnTable;
  const int ours[4] = {shared ? rt.controlListen : -1, shared ? rt.controlAlias : -1, rt.logFd - 1,
                       shared ? rt.controlWake - 1 : -1};
  int above = 0;
  for (int fd : ours) above += fd >= 0 && static_cast<rlim_t>(fd) >= soft;
  if (above == 0) return true;
  const long top = static_cast<long>(soft < mig::forward::kMaxFds ? soft : mig::forward::kMaxFds);
  // The highest free numbers under the new limit, one for each; if there are not that
  // many, none moves.
  long targets[4];
  int free = 0;
  for (long fd = top - 1; fd >= 0 && free < above; --fd) {
    if (rawSyscall(SYS_fcntl, fd, F_GETFD) == -EBADF) targets[free++] = fd;
  }
  if (free < above) return false;
  int k = 0;
  for (int fd : ours) {
    if (fd < 0 || static_cast<rlim_t>(fd) < soft) continue;
    // F_DUPFD from a free number gives that number.
    if (moveAside(fd, targets[k++])) rawSyscall(SYS_close, fd);
  }
  return true;
}

bool lowersFdLimit(int resource, const struct rlimit* lim) {
  return resource == RLIMIT_NOFILE && lim != nullptr;
}

// close_range over [first, last] without ours.
int closeAround(unsigned first, unsigned last, int flags) {
  const Runtime& rt = g_runtime;
  const bool shared = !rt.controlOwnTable;
  const int ours[5] = {shared ? rt.controlListen : -1, shared ? rt.controlAlias : -1, rt.logFd - 1,
                       shared ? rt.controlWake - 1 : -1, shared ? rt.controlConn : -1};
  unsigned from = first;
  for (;;) {
    long next = -1;  // our lowest fd in [from, last]
    for (int fd : ours) {
      if (fd >= 0 && static_cast<unsigned>(fd) >= from && static_cast<unsigned>(fd) <= last &&
          (next < 0 || fd < next)) {
        next = fd;
      }
    }
    if (next < 0) return MIG_REAL(close_range)(from, last, flags);
    if (static_cast<unsigned>(next) > from) {
      if (int r = MIG_REAL(close_range)(from, static_cast<unsigned>(next) - 1, flags); r != 0) return r;
    }
    if (static_cast<unsigned>(next) == last) return 0;
    from = static_cast<unsigned>(next) + 1;
  }
}

}  // namespace

extern "C" {

// setrlimit/setrlimit64 and prlimit/prlimit64 are two names each for one call on
// x86-64 (rlim_t is 64 bits either way); a program calls either, depending on
// _FILE_OFFSET_BITS. Named by asm labels: the headers redirect one name to the other.
int migSetrlimit(int resource, const struct rlimit* lim) __asm__("setrlimit") __attribute__((visibility("default")));
int migSetrlimit64(int resource, const struct rlimit* lim) __asm__("setrlimit64") __attribute__((visibility("default")));
int migPrlimit(pid_t pid, int resource, const struct rlimit* lim, struct rlimit* old) __asm__("prlimit")
    __attribute__((visibility("default")));
int migPrlimit64(pid_t pid, int resource, const struct rlimit* lim, struct rlimit* old) __asm__("prlimit64")
    __attribute__((visibility("default")));

static int limitSet(int resource, const struct rlimit* lim) {
  static auto real = reinterpret_cast<int (*)(int, const struct rlimit*)>(dlsym(RTLD_NEXT, "setrlimit"));
  if (lowersFdLimit(resource, lim) && !makeRoomUnder(lim->rlim_cur)) {
    errno = EMFILE;  // mig's own fds would not fit under it
    return -1;
  }
  return real(resource, lim);
}

static int limitPr(pid_t pid, int resource, const struct rlimit* lim, struct rlimit* old) {
  static auto real = reinterpret_cast<int (*)(pid_t, int, const struct rlimit*, struct rlimit*)>(dlsym(RTLD_NEXT, "prlimit"));
  if ((pid == 0 || pid == static_cast<pid_t>(rawSyscall(SYS_getpid))) && lowersFdLimit(resource, lim) &&
      !makeRoomUnder(lim->rlim_cur)) {
    errno = EMFILE;
    return -1;
  }
  return real(pid, resource, lim, old);
}

int migSetrlimit(int resource, const struct rlimit* lim) { return limitSet(resource, lim); }
int migSetrlimit64(int resource, const struct rlimit* lim) { return limitSet(resource, lim); }
int migPrlimit(pid_t pid, int resource, const struct rlimit* lim, struct rlimit* old) {
  return limitPr(pid, resource, lim, old);
}
int migPrlimit64(pid_t pid, int resource, const struct rlimit* lim, struct rlimit* old) {
  return limitPr(pid, resource, lim, old);
}

__attribute__((visibility("default"))) int dup2(int from, int to) {
  if (from != to && isShimFd(to)) moveAside(to);
  return MIG_REAL(dup2)(from, to);
}

__attribute__((visibility("default"))) int dup3(int from, int to, int flags) {
  if (from != to && isShimFd(to)) moveAside(to);
  return MIG_REAL(dup3)(from, to, flags);
}

__attribute__((visibility("default"))) int close(int fd) {
  if (isShimFd(fd)) return 0;
  return MIG_REAL(close)(fd);
}

__attribute__((visibility("default"))) int close_range(unsigned first, unsigned last, int flags) {
  if (first > last || (flags & CLOSE_RANGE_CLOEXEC)) return MIG_REAL(close_range)(first, last, flags);
  return closeAround(first, last, flags);
}

__attribute__((visibility("default"))) void closefrom(int lowfd) {
  if (lowfd < 0) lowfd = 0;
  if (closeAround(static_cast<unsigned>(lowfd), ~0u, 0) == 0) return;
  // As glibc: without close_range, close them one by one.
  for (long fd = lowfd; fd < sysconf(_SC_OPEN_MAX); ++fd) {
    if (!isShimFd(fd)) MIG_REAL(close)(static_cast<int>(fd));
  }
}

}  // extern "C"
