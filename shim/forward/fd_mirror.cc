// The fd table of a migrated process exists twice: here, where a home fd is a local
// stand-in (an fd on /dev/null) under the same number, and at home, where the deputy
// holds the real file. Calls that create, copy or close fds keep the two in step:
// the number is always chosen here (the lowest free local number, as the application
// expects), and the home side is made to use the same number with dup3.
//
//   openat (home path),  stand-in L reserved first, the call at home gives H;
//   accept (home socket): H != L: dup3(H, L) and close(H) at home.
//   close (home fd):     closed at home, then the stand-in.
//   dup / F_DUPFD:       duplicated here (number L), then dup3(fd, L) at home.
//   dup2/dup3:           both sides; a local fd over a home fd closes the home one.
//   close_range:         the home fds in the range are closed at home too.
//
// The bit of each home fd in Config::forwardedFds follows, and its pipelinedFds bit
// (a regular file opened for writing: its writes go behind). A process whose fd table
// is not the one the deputy mirrors (a child born away) keeps its own instead
// (child_table.h).
#include "shim/forward/trapped_call.h"

#include "shim/forward/child_table.h"
#include "shim/forward/state.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/stat.h>
#include <sys/syscall.h>

namespace mig::forward {
namespace {

State& state() { return shim::g_runtime.forward; }

long forwardDup3(int32_t from, int32_t to, int64_t flags) {
  return forwardSyscall(SYS_dup3, from, to, flags);
}

// `to` is now a copy of home fd `from`: a stream, or pipelined, as it is (whatever
// `to` was before).
void copyKindBits(State& s, int32_t from, int32_t to) {
  setForwardedFd(s, to, false);
  setForwardedFd(s, to, true);
  if (isStreamFd(s, from)) setStreamFd(s, to);
  setPipelinedFd(s, to, isPipelinedFd(s, from));
}

// A file just opened at home as fd: its writes go behind when it is a regular file
// open for writing (writesBehind; asking home is a round trip, so only then).
void markWritesBehind(State& s, int32_t fd, int64_t flags) {
  if (!writesBehind(static_cast<int>(flags))) return;
  struct stat st;
  if (forwardSyscall(SYS_newfstatat, fd, reinterpret_cast<int64_t>(""), reinterpret_cast<int64_t>(&st),
                     AT_EMPTY_PATH) == 0 &&
      S_ISREG(st.st_mode)) {
    setPipelinedFd(s, fd, true);
  }
}

// The home side of a new fd `to` that copies home fd `from` (already made here).
long mirrorCopy(int32_t from, int32_t to, int64_t flags) {
  State& s = state();
  long h = forwardDup3(from, to, flags);
  if (h < 0) {
    runLocally(SYS_close, to);
    setForwardedFd(s, to, false);
    return h;
  }
  copyKindBits(s, from, to);
  return to;
}

}  // namespace

long newFdForwarded(const rsc::Row& row, const int64_t args[6], bool cloexec) {
  if (ownTable()) return newOwnFd(row, args, cloexec);
  State& s = state();
  long local = runLocally(SYS_openat, AT_FDCWD, reinterpret_cast<int64_t>("/dev/null"),
                          O_RDWR | (cloexec ? O_CLOEXEC : 0));
  if (local < 0) return local;
  const int32_t l = static_cast<int32_t>(local);
  long home = forwardRow(row, args);
  if (home < 0) {
    runLocally(SYS_close, l);
    return home;
  }
  if (home != l) {
    long r = forwardDup3(static_cast<int32_t>(home), l, cloexec ? O_CLOEXEC : 0);
    forwardSyscall(SYS_close, home);
    if (r < 0) {
      runLocally(SYS_close, l);
      return r;
    }
  }
  setForwardedFd(s, l, true);
  if (row.handler == rsc::Handler::OpenFile) markWritesBehind(s, l, args[2]);
  return l;
}

long closeMirrored(const TrappedCall& c) {
  State& s = state();
  const int32_t fd = fdArg(c.a[0]);
  if (isConnectionFd(fd)) return 0;  // ours: the application never had it open
  if (!isForwardedFd(s, fd)) return runLocally(SYS_close, fd);
  if (ownTable()) return closeOwn(fd);
  long r = forwardSyscall(SYS_close, fd);
  setForwardedFd(s, fd, false);
  runLocally(SYS_close, fd);
  return r;
}

long closeRangeMirrored(const TrappedCall& c) {
  State& s = state();
  const uint32_t first = static_cast<uint32_t>(c.a[0]), last = static_cast<uint32_t>(c.a[1]);
  const uint32_t flags = static_cast<uint32_t>(c.a[2]);
  if (first > last || (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)) != 0) {
    return runLocally(SYS_close_range, first, last, flags);
  }
  if (!(flags & CLOSE_RANGE_CLOEXEC)) {
    const uint32_t top = last < kMaxFds - 1 ? last : kMaxFds - 1;
    for (uint32_t fd = first; fd <= top; ++fd) {
      if (!isForwardedFd(s, fd)) continue;
      if (ownTable()) {
        dropHomeFd(static_cast<int32_t>(fd));
        continue;
      }
      forwardSyscall(SYS_close, fd);
      setForwardedFd(s, fd, false);
    }
  }
  // Close around our relay connections, which live high in the same table.
  uint32_t from = first;
  for (;;) {
    uint32_t next = last;
    bool found = false;
    const uint32_t used = s.connectionSlots.load(std::memory_order_relaxed);
    for (uint32_t i = 0; i < used && i < kMaxConnections; ++i) {
      const uint64_t word = s.connections[i].load(std::memory_order_relaxed);
      for (const int32_t v : {slotFd(word), slotBusy(word)}) {  // the number a call still uses too
        if (v >= 0 && static_cast<uint32_t>(v) >= from && static_cast<uint32_t>(v) <= next) {
          next = static_cast<uint32_t>(v);
          found = true;
        }
      }
    }
    if (!found) return runLocally(SYS_close_range, from, last, flags);
    if (next > from) {
      long r = runLocally(SYS_close_range, from, next - 1, flags);
      if (r < 0) return r;
    }
    if (next == last) return 0;
    from = next + 1;
  }
}

long dupMirrored(const TrappedCall& c) {
  State& s = state();
  const int32_t from = fdArg(c.a[0]);
  // The program's own fds only: ours are not open for it, and onto one of ours goes
  // as onto a free number, ours moved away first (a `from` that is not open fails
  // before anything moves).
  if (isConnectionFd(from)) return -EBADF;
  if (c.nr != SYS_dup && from != fdArg(c.a[1]) && isConnectionFd(fdArg(c.a[1]))) {
    if (runLocally(SYS_fcntl, from, F_GETFD) < 0) return -EBADF;
    if (!moveConnectionFd(fdArg(c.a[1]))) return -EBADF;
  }
  if (ownTable()) return dupOwn(c);
  if (c.nr == SYS_dup) {
    if (!isForwardedFd(s, from)) return runLocally(SYS_dup, from);
    long l = runLocally(SYS_dup, from);
    return l < 0 ? l : mirrorCopy(from, static_cast<int32_t>(l), 0);
  }
  const int32_t to = fdArg(c.a[1]);
  const int64_t flags = c.nr == SYS_dup3 ? c.a[2] : 0;
  const bool fromHome = isForwardedFd(s, from), toHome = isForwardedFd(s, to);
  if ((!fromHome && !toHome) || from == to) return runLocally(c.nr, from, to, flags);
  long r = runLocally(c.nr, from, to, flags);
  if (r < 0) return r;
  if (fromHome) return mirrorCopy(from, to, flags);
  forwardSyscall(SYS_close, to);  // a local fd took the number of a home fd
  setForwardedFd(s, to, false);
  return r;
}

long fcntlDupMirrored(const TrappedCall& c) {
  if (isConnectionFd(fdArg(c.a[0]))) return -EBADF;  // ours: not open for the program
  if (ownTable()) return fcntlDupOwn(c);
  State& s = state();
  const int32_t fd = fdArg(c.a[0]);
  const int32_t cmd = static_cast<int32_t>(c.a[1]);
  if (!isForwardedFd(s, fd)) return runLocally(SYS_fcntl, fd, cmd, c.a[2]);
  long l = runLocally(SYS_fcntl, fd, cmd, c.a[2]);
  if (l < 0) return l;
  return mirrorCopy(fd, static_cast<int32_t>(l), cmd == F_DUPFD_CLOEXEC ? O_CLOEXEC : 0);
}

}  // namespace mig::forward
