// See signals.h. The emulations run in the SIGSYS handler; the signal mask they
// change is the one saved in the trapped context (rt_sigreturn installs it), since
// the mask of the handler itself is thrown away on return.
#include "shim/forward/signals.h"

#include "shim/forward/state.h"
#include "shim/forward/trampolines.h"
#include "shim/forward/trapped_call.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <atomic>
#include <cerrno>
#include <sys/syscall.h>

namespace mig::forward {
namespace {

using shim::rawSyscall;
using KAction = control::KernelSigaction;

constexpr uint64_t kSaRestorer = 0x04000000;  // SA_RESTORER (not in every libc header)
constexpr uint64_t kUnblockable = (1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1));
constexpr uint64_t kCheckpointBit = 1ull << (shim::kCheckpointSignal - 1);

bool isFunction(uint64_t handler) { return handler != reinterpret_cast<uint64_t>(SIG_DFL) &&
                                           handler != reinterpret_cast<uint64_t>(SIG_IGN); }

// What the kernel gets instead of the application's action.
KAction adopted(KAction a) {
  if (isFunction(a.handler)) {
    a.flags |= kSaRestorer;
    a.restorer = reinterpret_cast<uint64_t>(&mig_fwd_restorer);
  }
  a.mask &= ~kSigsysBit;
  return a;
}

uint64_t& maskOf(ucontext_t* uc) { return *reinterpret_cast<uint64_t*>(&uc->uc_sigmask); }

// Which signals are at their default action, and which have a handler (bit set), kept
// up to date as actions change.
std::atomic<uint64_t> g_defaultActions, g_handledActions;

void setBit(std::atomic<uint64_t>& set, int sig, bool on) {
  if (on) {
    set.fetch_or(signalBit(sig), std::memory_order_relaxed);
  } else {
    set.fetch_and(~signalBit(sig), std::memory_order_relaxed);
  }
}

void noteAction(int sig, uint64_t handler) {
  setBit(g_defaultActions, sig, handler == reinterpret_cast<uint64_t>(SIG_DFL));
  setBit(g_handledActions, sig, isFunction(handler));
}

}  // namespace

thread_local uint64_t t_openSignals __attribute__((tls_model("initial-exec")));

uint64_t signalsThatEnd() {
  return t_openSignals & g_defaultActions.load(std::memory_order_relaxed) &
         ~(kIgnoredByDefault | kStopsByDefault | kUnblockable | kSigsysBit | kCheckpointBit);
}

uint64_t signalsThatStop() {
  return t_openSignals & g_defaultActions.load(std::memory_order_relaxed) & kStopsByDefault & ~kUnblockable;
}

uint64_t signalsHandled() {
  return t_openSignals & g_handledActions.load(std::memory_order_relaxed) & ~(kUnblockable | kSigsysBit | kCheckpointBit);
}

void takeOverSignals() {
  State& s = shim::g_runtime.forward;
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGSYS) continue;
    KAction a{};
    if (rawSyscall(SYS_rt_sigaction, sig, 0, reinterpret_cast<long>(&a), 8) != 0) continue;
    noteAction(sig, a.handler);
    if (!isFunction(a.handler)) continue;
    KAction mine = adopted(a);
    rawSyscall(SYS_rt_sigaction, sig, reinterpret_cast<long>(&mine), 0, 8);
  }
  KAction current{};
  rawSyscall(SYS_rt_sigaction, SIGSYS, 0, reinterpret_cast<long>(&current), 8);
  if (current.handler != reinterpret_cast<uint64_t>(&sigsysHandler)) s.appSigsys = current;
  KAction ours{};
  ours.handler = reinterpret_cast<uint64_t>(&sigsysHandler);
  ours.flags = SA_SIGINFO | kSaRestorer;
  ours.restorer = reinterpret_cast<uint64_t>(&mig_fwd_restorer);
  ours.mask = ~0ull;  // nothing nests in a forwarded call (see runLocally for local ones)
  rawSyscall(SYS_rt_sigaction, SIGSYS, reinterpret_cast<long>(&ours), 0, 8);
}

long emulateSigaction(const TrappedCall& c) {
  State& s = shim::g_runtime.forward;
  const int sig = static_cast<int>(c.a[0]);
  const auto* act = reinterpret_cast<const KAction*>(c.a[1]);
  auto* old = reinterpret_cast<KAction*>(c.a[2]);
  if (c.a[3] != 8 || sig < 1 || sig > 64) return runLocally(SYS_rt_sigaction, c.a[0], c.a[1], c.a[2], c.a[3]);
  if (sig == SIGSYS) {
    KAction previous = s.appSigsys;
    if (act != nullptr) s.appSigsys = *act;
    if (old != nullptr) *old = previous;
    return 0;
  }
  if (act == nullptr || sig == SIGKILL || sig == SIGSTOP) {
    return runLocally(SYS_rt_sigaction, sig, c.a[1], c.a[2], 8);
  }
  KAction mine = adopted(*act);
  const long r = runLocally(SYS_rt_sigaction, sig, reinterpret_cast<int64_t>(&mine), c.a[2], 8);
  if (r == 0) noteAction(sig, act->handler);
  return r;
}

long emulateSigprocmask(const TrappedCall& c, ucontext_t* uc) {
  const int how = static_cast<int>(c.a[0]);
  const auto* set = reinterpret_cast<const uint64_t*>(c.a[1]);
  auto* old = reinterpret_cast<uint64_t*>(c.a[2]);
  if (c.a[3] != 8) return -EINVAL;
  uint64_t& mask = maskOf(uc);
  uint64_t next = mask;
  if (set != nullptr) {
    const uint64_t v = *set;
    switch (how) {
      case SIG_BLOCK: next = mask | v; break;
      case SIG_UNBLOCK: next = mask & ~v; break;
      case SIG_SETMASK: next = v; break;
      default: return -EINVAL;
    }
  }
  if (old != nullptr) *old = mask;
  mask = next & ~(kUnblockable | kSigsysBit | kCheckpointBit);
  return 0;
}

void deliverToApplication(int sig, siginfo_t* info, void* context) {
  State& s = shim::g_runtime.forward;
  const KAction a = s.appSigsys;
  if (a.handler == reinterpret_cast<uint64_t>(SIG_IGN)) return;
  if (a.handler == reinterpret_cast<uint64_t>(SIG_DFL)) {
    // The default action, which is to die: reset and resend; it arrives on return.
    KAction dfl{};
    rawSyscall(SYS_rt_sigaction, SIGSYS, reinterpret_cast<long>(&dfl), 0, 8);
    rawSyscall(SYS_tgkill, rawSyscall(SYS_getpid), rawSyscall(SYS_gettid), SIGSYS);
    return;
  }
  // The application's handler runs with the mask it asked for, minus SIGSYS, so the
  // calls it makes can be dispatched.
  auto* uc = static_cast<ucontext_t*>(context);
  uint64_t mask = (maskOf(uc) | a.mask) & ~kSigsysBit, saved = 0;
  rawSyscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&mask), reinterpret_cast<long>(&saved), 8);
  if (a.flags & SA_SIGINFO) {
    reinterpret_cast<void (*)(int, siginfo_t*, void*)>(a.handler)(sig, info, context);
  } else {
    reinterpret_cast<void (*)(int)>(a.handler)(sig);
  }
  rawSyscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&saved), 0, 8);
}

}  // namespace mig::forward
