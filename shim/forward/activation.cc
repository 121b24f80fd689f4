// See activation.h and forward.h (the control thread's part of a restore, and the
// checkpoint's).
#include "shim/forward/activation.h"

#include "shim/forward/clock_shift.h"
#include "shim/forward/connection.h"
#include "shim/forward/forward.h"
#include "shim/forward/homecoming.h"
#include "shim/forward/rebind.h"
#include "shim/forward/signals.h"
#include "shim/forward/state.h"
#include "shim/forward/sud.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/syscall.h>

namespace mig::forward {
namespace {

// Exit status of a restored job that could not set up its calls home (shadowd's
// restore log shows it; the job goes on at home).
constexpr int kActivationFailedStatus = 125;

using shim::rawSyscall;

State& state() { return shim::g_runtime.forward; }

// A child born away, restored at home (migctl/tree_restart.h): its home fds are the
// deputy's, held from `back.homeFdBase` up; which deputy fd each of its numbers is only
// its own table says (child_table.h). Each goes to its number (over the restart's
// /dev/null placeholder, keeping the close-on-exec flag the restorer set there), then
// the held copies are closed.
void placeHeldHomeFds(const Config& mine, const Config& back) {
  const uint32_t count = back.heldCount < kMaxFds ? back.heldCount : kMaxFds;
  for (uint32_t n = 0; n < kMaxFds; ++n) {
    if ((mine.forwardedFds[n / 64] >> (n % 64) & 1) == 0) continue;
    const int32_t home = mine.ownTable != 0 && mine.homeFd[n] != 0 ? mine.homeFd[n] - 1 : static_cast<int32_t>(n);
    for (uint32_t i = 0; i < count; ++i) {
      if (back.heldFds[i] != home) continue;
      const long flags = rawSyscall(SYS_fcntl, n, F_GETFD);
      rawSyscall(SYS_dup3, back.homeFdBase + i, n, flags > 0 && (flags & FD_CLOEXEC) ? O_CLOEXEC : 0);
      break;
    }
  }
  for (uint32_t i = 0; i < count; ++i) rawSyscall(SYS_close, back.homeFdBase + i);
}

}  // namespace

bool loadConfig(int fd) {
  State& s = state();
  Config c{};
  uint64_t got = 0;
  while (got < sizeof(c)) {
    long n = rawSyscall(SYS_pread64, fd, reinterpret_cast<long>(reinterpret_cast<char*>(&c) + got),
                        static_cast<long>(sizeof(c) - got), static_cast<long>(got));
    if (n == -EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<uint64_t>(n);
  }
  if (c.magic != kConfigMagic || c.size != sizeof(Config)) return false;
  if (c.homecoming != 0) {
    // Back home, in its deputy's process: every fd is the job's own again, and the
    // next move starts from what the job holds then, not from this hop's bits.
    takeCarriedReplies(c.carriedFd);
    if (c.homeFdBase > 0) placeHeldHomeFds(s.config, c);
    __builtin_memset(&s.config, 0, sizeof(s.config));
    // Its children forked at home from now on are home's on the next move
    // (child_pids.h, mayHaveChildrenAtHome).
    s.noChildAtHome.store(false);
    return true;
  }
  c.relaySocket[sizeof(c.relaySocket) - 1] = '\0';
  // A job that forwarded before (an earlier hop) knows better than the restarting
  // migctl which of its fds are home fds: those it opened on the last host (under a
  // local path, a pipe, a /dev/null of its own) stay local.
  if (s.config.magic == kConfigMagic) {
    for (uint32_t i = 0; i < kMaxFds / 64; ++i) {
      c.forwardedFds[i] = s.config.forwardedFds[i];
      c.streamFds[i] = s.config.streamFds[i];
      c.pipelinedFds[i] = s.config.pipelinedFds[i];
      c.ownedFds[i] = s.config.ownedFds[i];
    }
    // And its fd table's relation to the deputy, the same one on this host: a child
    // born away (which moves on with its parent, issue 12) or a program exec'd away
    // keeps a table of its own, with its home fds' numbers there (child_table.h).
    c.ownTable = s.config.ownTable;
    for (uint32_t i = 0; i < kMaxFds; ++i) c.homeFd[i] = s.config.homeFd[i];
  }
  s.config = c;
  return true;
}

void activateProcess() {
  State& s = state();
  dropAllConnections(false);  // numbers from before the restore may be the application's now
  s.cwdLocal.store(0);
  shimText();  // computed once, before any thread needs it
  takeOverSignals();
  s.status.store(kActive, std::memory_order_release);
  setClockShift(s.config);
}

bool dispatchThisThread() {
  allowSyscalls();
  if (state().status.load(std::memory_order_acquire) != kActive || !enableSud()) return false;
  // A dispatched call while SIGSYS is blocked would kill the process.
  uint64_t sigsys = kSigsysBit;
  rawSyscall(SYS_rt_sigprocmask, SIG_UNBLOCK, reinterpret_cast<long>(&sigsys), 0, 8);
  blockSyscalls();
  return true;
}

void prepareCheckpoint() {
  State& s = state();
  // Shared writable mappings of home files: their changes go home while the link is
  // up (or, at home, they are listed to be tracked where the job resumes).
  prepareSharedMappingsForCheckpoint(s.status.load() == kActive);
  // The image must not leave with writes still on their way home: from the next
  // host they could overtake them.
  if (s.status.load() == kActive) drainPipelinedWrites();
  if (s.generation.load() != 0) dropAllConnections(true);
  s.released.store(0);
}

void onRestored(int configFd) {
  State& s = state();
  s.localHashes.clear();
  if (configFd >= 0) {
    bool ok = loadConfig(configFd);
    rawSyscall(SYS_close, configFd);
    if (ok && s.config.magic != kConfigMagic) {  // a hop back home: nothing to forward
      s.status.store(kInactive);
      clearClockShift();
      sharedMappingsAfterRestore(false);  // the files themselves mapped again
    } else {
      if (ok) {
        activateProcess();
        // runCheckpoint counted the restorer's clock reading (this host's) against the
        // job's at the freeze; the job's own clock is ahead by the offset.
        shim::g_runtime.frozenNs += jobMonotonicShiftNs();
      }
      // Tell home at once that the job runs here (the relay learns it from the first
      // connection), even if the application makes no forwarded call for a while.
      // This thread's connection stays open until the next checkpoint. A migrated job
      // that cannot reach home must not run here at all (it still runs at home, which
      // gives up only when this connection arrives): end before any thread resumes.
      if (!ok || !connectNow()) rawSyscall(SYS_exit_group, kActivationFailedStatus);
      sharedMappingsAfterRestore(true);  // their copies read from home now
      if (s.config.network == kNetworkRebind) rebindSockets();
    }
  } else {
    s.status.store(kInactive);
    clearClockShift();
  }
  s.released.store(1, std::memory_order_release);
  rawSyscall(SYS_futex, reinterpret_cast<long>(&s.released), FUTEX_WAKE_PRIVATE, 0x7fffffff);
}

}  // namespace mig::forward
