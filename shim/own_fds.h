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

// The lowest number of the band.
inline long ownFdFloor() {
  struct rlimit lim {};
  rawSyscall(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, reinterpret_cast<long>(&lim));
  const uint64_t top = lim.rlim_cur < forward::kMaxFds ? lim.rlim_cur : forward::kMaxFds;
  return top > 2 * kOwnFdBand ? static_cast<long>(top) - kOwnFdBand : static_cast<long>(top / 2);
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
// program takes its number: in the band, or where the program holds the whole band,
// the highest free number under it (the program's opens take the lowest). Negative
// errno when the table is full.
inline long copyOwnFd(long fd) {
  const long floor = ownFdFloor();
  const long high = rawSyscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, floor);
  if (high != -EMFILE) return high;
  for (long n = floor - 1; n >= 0; --n) {
    // F_DUPFD from a free number gives that number.
    if (rawSyscall(SYS_fcntl, n, F_GETFD) == -EBADF) return rawSyscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, n);
  }
  return -EMFILE;
}

}  // namespace mig::shim
