// See child_pids.h.
#include "shim/forward/child_pids.h"

#include "shim/forward/state.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <sys/syscall.h>

namespace mig::forward {
namespace {

State& state() { return shim::g_runtime.forward; }

pid_t slotPid(uint32_t slot) {
  const pid_t job = shim::g_runtime.vpid % kAwayPidBase;
  return kAwayPidBase + job * static_cast<pid_t>(kMaxAwayChildren) + static_cast<pid_t>(slot);
}

}  // namespace

pid_t reserveChildPid() {
  State& s = state();
  for (uint32_t i = 0; i < kMaxAwayChildren; ++i) {
    int32_t expected = 0;
    // -1: reserved, the fork has not returned yet.
    if (s.childReal[i].compare_exchange_strong(expected, -1)) return slotPid(i);
  }
  return 0;
}

void bindChildPid(pid_t vpid, pid_t real) {
  if (vpid == 0) return;
  const uint32_t slot = static_cast<uint32_t>(vpid - slotPid(0));
  if (slot >= kMaxAwayChildren) return;
  state().childReal[slot].store(real > 0 ? real : 0);
}

void becomeChild(pid_t vpid) {
  State& s = state();
  for (uint32_t i = 0; i < kMaxAwayChildren; ++i) s.childReal[i].store(0);
  shim::Runtime& rt = shim::g_runtime;
  const pid_t parent = rt.vpid;
  if (vpid == 0) vpid = static_cast<pid_t>(shim::rawSyscall(SYS_getpid));
  rt.vpid = vpid;
  rt.vppid = parent;
  rt.bornAway = true;
  rt.pendingVpid = vpid;  // for initProcess, if a fork() in libc runs its atfork handlers
  rt.pendingVppid = parent;
  shim::t_vtid = vpid;
}

pid_t childRealPid(pid_t vpid) {
  const uint32_t slot = static_cast<uint32_t>(vpid - slotPid(0));
  if (vpid < kAwayPidBase || slot >= kMaxAwayChildren) return 0;
  const int32_t real = state().childReal[slot].load();
  return real > 0 ? real : 0;
}

pid_t childVirtualPid(pid_t real) {
  if (real <= 0) return real;
  const State& s = state();
  for (uint32_t i = 0; i < kMaxAwayChildren; ++i) {
    if (s.childReal[i].load(std::memory_order_relaxed) == real) return slotPid(i);
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

}  // namespace mig::forward
