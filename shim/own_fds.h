// Where the shim keeps its own fds (the control socket, relay connections, the
// MIG_LOG file): in a band just under the fd limit as it is now (capped at
// forward::kMaxFds, so a large limit does not make the kernel grow the fd table), far
// above the lowest free numbers the program's opens get and the low numbers shells and
// daemons dup2 onto. Taken from the current soft limit each time, so a program that
// lowered it (memcached -c 1024 sets 1024) gets ours under its limit. An fd made
// before the limit was lowered stays usable above it (the kernel only refuses new
// numbers there). Raw system calls only: used from signal handlers too.
#pragma once

#include "shim/forward/forward_config.h"
#include "shim/raw_syscall.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

namespace mig::shim {

inline constexpr long kOwnFdBand = 64;

// The top of the band: the soft limit, capped.
inline long ownFdTop() {
  struct rlimit lim {};
  rawSyscall(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, reinterpret_cast<long>(&lim));
  return static_cast<long>(lim.rlim_cur < forward::kMaxFds ? lim.rlim_cur : forward::kMaxFds);
}

// The lowest number of the band.
inline long ownFdFloor() {
  const long top = ownFdTop();
  return top > 2 * kOwnFdBand ? top - kOwnFdBand : top / 2;
}

// Moves our new `fd` into the band (close-on-exec) and returns its number there; where
// the band is full it stays where it is.
inline long placeOwnFd(long fd) {
  if (fd < 0) return fd;
  long high = rawSyscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, ownFdFloor());
  if (high < 0) return fd;
  rawSyscall(SYS_close, fd);
  return high;
}

// A copy of our `fd` (close-on-exec) under another number for it to move to, when the
// program takes its number: the highest free one under the limit, away from the
// lowest ones the program's opens get, and ahead of a program that dup2s onto every
// number upwards (the next one it takes is not ours again). Negative errno when the
// table is full. A scan from the top: a move is rare, and the band mostly free.
inline long copyOwnFd(long fd) {
  for (long n = ownFdTop() - 1; n >= 0; --n) {
    if (rawSyscall(SYS_fcntl, n, F_GETFD) != -EBADF) continue;
    // F_DUPFD from a free number gives that number (or the next free one, if another
    // thread took it meanwhile).
    const long copy = rawSyscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, n);
    if (copy >= 0) return copy;
  }
  return -EMFILE;
}

}  // namespace mig::shim
