// See child_pids.h.
#include "shim/forward/child_pids.h"

#include "shim/forward/state.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <sys/syscall.h>

namespace mig::forward {
namespace {

State& state() { return shim::g_runtime.forward; }

pid_t virtualOf(pid_t real) { return kAwayPidBase + real; }

}  // namespace

pid_t reserveChildPid() {
  State& s = state();
  for (uint32_t i = 0; i < kMaxAwayChildren; ++i) {
    int32_t expected = 0;
    // -1: reserved, the fork has not returned yet.
    if (s.childReal[i].compare_exchange_strong(expected, -1)) return static_cast<pid_t>(i + 1);
  }
  return 0;
}

pid_t bindChildPid(pid_t reservation, pid_t real) {
  const uint32_t slot = static_cast<uint32_t>(reservation - 1);
  if (reservation == 0 || slot >= kMaxAwayChildren) return real;
  state().childReal[slot].store(real > 0 ? real : 0);
  return real > 0 ? virtualOf(real) : real;
}

void becomeChild(pid_t reservation) {
  State& s = state();
  for (uint32_t i = 0; i < kMaxAwayChildren; ++i) s.childReal[i].store(0);
  shim::Runtime& rt = shim::g_runtime;
  const pid_t parent = rt.vpid;
  const pid_t real = static_cast<pid_t>(shim::rawSyscall(SYS_getpid));
  const pid_t vpid = reservation != 0 ? virtualOf(real) : real;
  rt.vpid = vpid;
  rt.vppid = parent;
  rt.bornAway = true;
  rt.pendingVpid = vpid;  // for initProcess, if a fork() in libc runs its atfork handlers
  rt.pendingVppid = parent;
  shim::t_vtid = vpid;
}

pid_t childRealPid(pid_t vpid) {
  if (vpid <= kAwayPidBase) return 0;
  const pid_t real = vpid - kAwayPidBase;
  const State& s = state();
  for (uint32_t i = 0; i < kMaxAwayChildren; ++i) {
    if (s.childReal[i].load(std::memory_order_relaxed) == real) return real;
  }
  return 0;
}

pid_t childVirtualPid(pid_t real) {
  if (real <= 0) return real;
  const State& s = state();
  for (uint32_t i = 0; i < kMaxAwayChildren; ++i) {
    if (s.childReal[i].load(std::memory_order_relaxed) == real) return virtualOf(real);
  }
  return real;
}

bool isChildRealPid(pid_t real) { return real > 0 && childVirtualPid(real) != real; }

bool haveChildren() {
  const State& s = state();
  for (uint32_t i = 0; i < kMaxAwayChildren; ++i) {
    if (s.childReal[i].load(std::memory_order_relaxed) != 0) return true;
  }
  return false;
}

void forgetChild(pid_t real) {
  State& s = state();
  for (uint32_t i = 0; i < kMaxAwayChildren; ++i) {
    int32_t expected = real;
    if (s.childReal[i].compare_exchange_strong(expected, 0)) return;
  }
}

uint32_t listChildren(pid_t* out, uint32_t max) {
  const State& s = state();
  uint32_t n = 0;
  for (uint32_t i = 0; i < kMaxAwayChildren && n < max; ++i) {
    const int32_t real = s.childReal[i].load(std::memory_order_relaxed);
    if (real > 0) out[n++] = real;
  }
  return n;
}

bool mayHaveChildrenAtHome() {
  return !shim::g_runtime.bornAway && !state().noChildAtHome.load(std::memory_order_relaxed);
}

void noChildrenAtHome() { state().noChildAtHome.store(true, std::memory_order_relaxed); }

}  // namespace mig::forward
