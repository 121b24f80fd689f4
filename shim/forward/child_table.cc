// See child_table.h.
#include "shim/forward/child_table.h"

#include "rsc/child_locks.h"
#include "shim/forward/state.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>

namespace mig::forward {
namespace {

// Where the deputy puts the home files such processes open: far above the job's own
// numbers (the low ones, which the job's next open may claim) and the deputy's own
// (from 1024, deputy/main.cc).
constexpr int64_t kOwnHomeFloor = 8192;

State& state() { return shim::g_runtime.forward; }

bool inRange(int64_t fd) { return fd >= 0 && fd < kMaxFds; }

void setOwned(State& s, int32_t fd, bool on) {
  const uint64_t bit = 1ull << (fd % 64);
  if (on) __atomic_fetch_or(&s.config.ownedFds[fd / 64], bit, __ATOMIC_ACQ_REL);
  else __atomic_fetch_and(&s.config.ownedFds[fd / 64], ~bit, __ATOMIC_ACQ_REL);
}

// Closes the deputy's fd `home`, one it opened for this process. A process born away
// (not the job) closes it through the lock keeper's row: a close in the deputy of a
// file the job holds record locks on would drop them (rsc/child_locks.h kChildClose).
// The job's own (a program it exec'd after the move) drops them, as the kernel does.
void closeHome(int64_t home) {
  if (!shim::g_runtime.bornAway) {
    forwardSyscall(SYS_close, home);
    return;
  }
  struct flock unused {};  // the row's struct travels whatever the command
  int64_t args[6] = {home, rsc::kChildClose, reinterpret_cast<int64_t>(&unused), shim::g_runtime.vpid, 0, 0};
  forwardRow(rsc::rowOf(rsc::CallId::ChildLock), args);
}

bool owned(const State& s, int32_t fd) {
  return inRange(fd) && ((__atomic_load_n(&s.config.ownedFds[fd / 64], __ATOMIC_ACQUIRE) >> (fd % 64)) & 1);
}

// `to` (made here) is now a copy of home fd `from`.
void copyHomeFd(State& s, int32_t from, int32_t to) {
  if (!inRange(to)) return;
  __atomic_store_n(&s.config.homeFd[to], homeFdOf(from) + 1, __ATOMIC_RELEASE);
  setForwardedFd(s, to, true);
  if (isStreamFd(s, from)) setStreamFd(s, to);
}

}  // namespace

void dropHomeFd(int32_t fd) {
  State& s = state();
  if (!isForwardedFd(s, fd)) return;
  if (owned(s, fd)) {
    // A copy made here (dup, dup2, F_DUPFD: copyHomeFd) names the same home fd, and
    // keeps using it: it inherits the home side instead (a shell's `read < FILE`
    // moves the file to 0 with dup2 and closes the one it opened).
    const int32_t home = homeFdOf(fd);
    int32_t heir = -1;
    for (int32_t i = 0; i < static_cast<int32_t>(kMaxFds) && heir < 0; ++i) {
      if (i != fd && isForwardedFd(s, i) && homeFdOf(i) == home) heir = i;
    }
    if (heir >= 0) setOwned(s, heir, true);
    else closeHome(home);
  }
  setOwned(s, fd, false);
  setForwardedFd(s, fd, false);
  __atomic_store_n(&s.config.homeFd[fd], 0, __ATOMIC_RELEASE);
}

bool ownTable() { return __atomic_load_n(&state().config.ownTable, __ATOMIC_ACQUIRE) != 0; }

int32_t homeFdOf(int32_t fd) {
  if (!inRange(fd)) return fd;
  const int32_t h = __atomic_load_n(&state().config.homeFd[fd], __ATOMIC_ACQUIRE);
  return h != 0 ? h - 1 : fd;
}

void toHomeFds(const rsc::Row& row, int64_t args[6]) {
  for (uint8_t i = 0; i < row.nargs; ++i) {
    if (row.args[i].kind == rsc::Arg::Fd && fdArg(args[i]) >= 0) args[i] = homeFdOf(fdArg(args[i]));
  }
}

long newOwnFd(const rsc::Row& row, const int64_t args[6], bool cloexec) {
  State& s = state();
  long local = runLocally(SYS_openat, AT_FDCWD, reinterpret_cast<int64_t>("/dev/null"),
                          O_RDWR | (cloexec ? O_CLOEXEC : 0));
  if (local < 0) return local;
  long h = forwardRow(row, args);  // args name the deputy's numbers already
  long high = h < 0 ? h : forwardSyscall(SYS_fcntl, h, F_DUPFD, kOwnHomeFloor);
  if (h >= 0) closeHome(h);
  if (high < 0 || !inRange(local)) {
    if (high >= 0) closeHome(high);
    runLocally(SYS_close, local);
    return high < 0 ? high : -EMFILE;
  }
  const int32_t l = static_cast<int32_t>(local);
  __atomic_store_n(&s.config.homeFd[l], static_cast<int32_t>(high) + 1, __ATOMIC_RELEASE);
  setForwardedFd(s, l, true);
  setOwned(s, l, true);
  return l;
}

long closeOwn(int32_t fd) {
  dropHomeFd(fd);
  return runLocally(SYS_close, fd);
}

long dupOwn(const TrappedCall& c) {
  State& s = state();
  const int32_t from = fdArg(c.a[0]);
  const int32_t to = c.nr == SYS_dup ? -1 : fdArg(c.a[1]);
  if (to >= 0 && to != from) dropHomeFd(to);
  long r = runLocally(c.nr, c.a[0], c.a[1], c.a[2]);
  if (r >= 0 && static_cast<int32_t>(r) != from && isForwardedFd(s, from)) copyHomeFd(s, from, static_cast<int32_t>(r));
  return r;
}

long fcntlDupOwn(const TrappedCall& c) {
  State& s = state();
  const int32_t from = fdArg(c.a[0]);
  long r = runLocally(SYS_fcntl, c.a[0], c.a[1], c.a[2]);
  if (r >= 0 && isForwardedFd(s, from)) copyHomeFd(s, from, static_cast<int32_t>(r));
  return r;
}

void takeOwnTable() {
  State& s = state();
  __atomic_store_n(&s.config.ownTable, 1, __ATOMIC_RELEASE);
  // Its writes go unnumbered: the job's numbering is the job's (connection.h).
  for (uint32_t i = 0; i < kMaxFds / 64; ++i) __atomic_store_n(&s.config.pipelinedFds[i], 0, __ATOMIC_RELEASE);
}

void adoptInheritedHomeFds() {
  State& s = state();
  for (uint32_t word = 0; word < kMaxFds / 64; ++word) {
    uint64_t bits = __atomic_load_n(&s.config.ownedFds[word], __ATOMIC_ACQUIRE);
    while (bits != 0) {
      const int32_t fd = static_cast<int32_t>(word * 64 + __builtin_ctzll(bits));
      bits &= bits - 1;
      // The home side is the parent's: closing it would take it from the parent (ld's
      // output file, closed by the lto-wrapper it runs). A copy at home of our own is
      // what fork gives: the same open file, its own number.
      long copy = forwardSyscall(SYS_fcntl, homeFdOf(fd), F_DUPFD, kOwnHomeFloor);
      if (copy >= 0) {
        __atomic_store_n(&s.config.homeFd[fd], static_cast<int32_t>(copy) + 1, __ATOMIC_RELEASE);
      } else {
        setOwned(s, fd, false);  // no room at home: we use the parent's, never close it
      }
    }
  }
}

}  // namespace mig::forward
