// The program's calls that would take or close one of the shim's own fds (own_fds.h):
// the control sockets, the control thread's wake eventfd and the MIG_LOG file. A
// dup2/dup3 onto one moves ours to another number first (the control thread is woken
// to poll the new numbers before the program's call goes on), then the call proceeds as
// the program asked; a close of one is a no-op for the program, which never had it; a
// close_range/closefrom closes around ours. After a move the same calls reach the
// SIGSYS handler too (shim/forward/fd_mirror.cc), which keeps the relay connections.
#include "shim/own_fds.h"

#include "shim/real_function.h"
#include "shim/runtime.h"

#include <cerrno>
#include <ctime>
#include <linux/close_range.h>
#include <unistd.h>

using namespace mig::shim;

namespace {

bool isShimFd(long fd) {
  const Runtime& rt = g_runtime;
  // vpid: before the constructor ran, the fields are zeros, not fds.
  return fd >= 0 && rt.vpid != 0 && (fd == rt.controlListen || fd == rt.controlAlias || fd == rt.logFd - 1 || fd == rt.controlWake - 1);
}

// Moves our fd `fd` elsewhere in the band (the program's call then takes the number).
void moveAside(int fd) {
  Runtime& rt = g_runtime;
  const long moved = rawSyscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, ownFdFloor());
  if (moved < 0) return;  // no room: the program's call goes on and ours is gone (the
                          // control thread then listens anew; MIG_LOG stops)
  const int n = static_cast<int>(moved);
  if (fd == rt.logFd - 1) {
    rt.logFd = n + 1;
    return;
  }
  const bool polled = fd == rt.controlListen || fd == rt.controlAlias || fd == rt.controlWake - 1;
  const uint32_t loops = rt.controlLoops.load(std::memory_order_acquire);
  if (fd == rt.controlListen) rt.controlListen = n;
  else if (fd == rt.controlAlias) rt.controlAlias = n;
  else rt.controlWake = n + 1;
  if (!polled || rt.controlWake == 0) return;
  // Wake the control thread (the eventfd is the same file under either number) and wait
  // until it polls again with the new numbers: from then on the old one may be the
  // program's. Bounded: a control thread busy with a checkpoint re-reads them anyway.
  const uint64_t one = 1;
  rawSyscall(SYS_write, rt.controlWake - 1, reinterpret_cast<long>(&one), sizeof(one));
  for (int i = 0; i < 2000 && rt.controlLoops.load(std::memory_order_acquire) == loops; ++i) {
    struct timespec ms = {0, 1000000};
    rawSyscall(SYS_nanosleep, reinterpret_cast<long>(&ms), 0);
  }
}

// close_range over [first, last] without ours.
int closeAround(unsigned first, unsigned last, int flags) {
  const Runtime& rt = g_runtime;
  const int ours[4] = {rt.controlListen, rt.controlAlias, rt.logFd - 1, rt.controlWake - 1};
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
