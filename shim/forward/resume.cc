// mig_resumed_thread: where the restorer hands each restored thread over to the shim
// (see forward.h). Runs before the thread is back in its saved context, with every
// signal blocked (the restorer's mask), on the thread's own stack below its saved
// frame, with its TLS in place. It must not return: it ends in rt_sigreturn.
#include "shim/forward/forward.h"

#include "shim/forward/signals.h"
#include "shim/forward/state.h"
#include "shim/forward/sud.h"
#include "shim/forward/trampolines.h"
#include "shim/park_signals.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>

namespace mig::forward {
namespace {

using shim::rawSyscall;

// How long a thread waits for the control thread to activate forwarding before it
// carries on without (the control thread only reads a small memfd and sets handlers).
constexpr int64_t kActivationWaitNs = 30ll * 1000 * 1000 * 1000;

int64_t monotonicNs() {
  struct timespec ts {};
  rawSyscall(SYS_clock_gettime, CLOCK_MONOTONIC, reinterpret_cast<long>(&ts));
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

bool isControlThread(const shim::Runtime& rt, uint64_t ucontextAddr) {
  const control::Block& b = rt.block;
  for (uint32_t i = 0; i < b.threadCount && i < control::kMaxThreads; ++i) {
    if (b.threads[i].ucontextAddr == ucontextAddr) return b.threads[i].isControlThread != 0;
  }
  return false;
}

void waitForRelease(State& s) {
  const int64_t deadline = monotonicNs() + kActivationWaitNs;
  while (s.released.load(std::memory_order_acquire) == 0) {
    int64_t left = deadline - monotonicNs();
    if (left <= 0) return;
    struct timespec slice = {0, left < 100000000 ? static_cast<long>(left) : 100000000};
    rawSyscall(SYS_futex, reinterpret_cast<long>(&s.released), FUTEX_WAIT_PRIVATE, 0,
               reinterpret_cast<long>(&slice));
  }
}

}  // namespace
}  // namespace mig::forward

extern "C" [[noreturn]] __attribute__((visibility("hidden"))) void mig_resumed_thread(uint64_t ucontextAddr) {
  using namespace mig::forward;
  mig::shim::Runtime& rt = mig::shim::g_runtime;
  State& s = rt.forward;
  t_sudOn = 0;  // this is a new process: whatever memory says, dispatch is off
  const bool migrated = rt.resume.magic == mig::plan::kResumeMagic && rt.resume.configFd >= 0;
  const bool control = isControlThread(rt, ucontextAddr);
  // Its pending signals are queued again (the restorer): one that came while it was
  // parked ends the call it waited in, as it would have without mig.
  if (!control) mig::shim::settleInterruptedCall(reinterpret_cast<ucontext_t*>(ucontextAddr));
  if (migrated && !control) {
    allowSyscalls();
    if (enableSud()) {
      waitForRelease(s);
      if (s.released.load(std::memory_order_acquire) != 0 && s.status.load() == kActive) {
        // The thread may have had SIGSYS blocked before it migrated; it must not now.
        auto* uc = reinterpret_cast<ucontext_t*>(ucontextAddr);
        *reinterpret_cast<uint64_t*>(&uc->uc_sigmask) &= ~kSigsysBit;
        blockSyscalls();
      } else if (s.status.load() != kActive) {
        disableSud();  // back home (homecoming.h): nothing of it forwards any more
      }
    }
  }
  mig_fwd_sigreturn_at(ucontextAddr);
}
