// shim/signal_verdict.h: which pending signal decides how a system call it interrupts
// ends, and how. One rule for the two places the shim decides it itself: the end of a
// park for a checkpoint (park_signals.cc, a call the kernel set up to restart) and the
// waits the SIGSYS handler emulates or cuts short (forward/sigsys_handler.cc
// pendingSignalVerdict: a lock or child wait, a read at home cancelled by a signal).
// The kernel's: signals are taken lowest number first; an ignored one (SIG_IGN, or a
// default that does nothing) and a default stop do not decide (a stopped call is made
// again on CONT, unless a handler runs after it), the first handler does (EINTR without
// SA_RESTART, the call made again with it), and a default that ends the process ends
// the call with it. Header-only and async-signal-safe; the rule is pure (unit-tested in
// tests/signal_verdict_test.cc), kernelAction reads the real actions.
#pragma once

#include "shim/raw_syscall.h"

#include <csignal>
#include <cstdint>
#include <sys/syscall.h>

namespace mig::shim {

constexpr uint64_t signalBit(int sig) { return 1ull << (sig - 1); }
// Default actions other than ending the process (every other signal's default ends it).
inline constexpr uint64_t kIgnoredByDefault =
    signalBit(SIGCHLD) | signalBit(SIGURG) | signalBit(SIGWINCH) | signalBit(SIGCONT);
inline constexpr uint64_t kStopsByDefault =
    signalBit(SIGSTOP) | signalBit(SIGTSTP) | signalBit(SIGTTIN) | signalBit(SIGTTOU);

struct SignalAction {
  uint64_t handler = 0;  // SIG_DFL, SIG_IGN or a function
  uint64_t flags = 0;    // sa_flags
};

struct Verdict {
  int sig = 0;              // the signal that decides (0: none does)
  bool handled = false;     // it has a handler
  bool interrupts = false;  // the call ends with EINTR (else it is made again)
  bool stopped = false;     // a default stop came first and none decides: made again
};

// `open`: the pending signals the thread lets in; actionOf(sig, action): false if
// unknown (passed over).
template <typename ActionOf>
Verdict signalVerdict(uint64_t open, ActionOf actionOf) {
  Verdict v;
  for (; open != 0; open &= open - 1) {
    const int sig = __builtin_ctzll(open) + 1;
    SignalAction a;
    if (!actionOf(sig, a) || a.handler == reinterpret_cast<uint64_t>(SIG_IGN)) continue;
    if (a.handler == reinterpret_cast<uint64_t>(SIG_DFL)) {
      if (kIgnoredByDefault & signalBit(sig)) continue;
      if (kStopsByDefault & signalBit(sig)) {
        v.stopped = true;
        continue;
      }
      v.sig = sig;
      v.interrupts = true;
      return v;
    }
    v.sig = sig;
    v.handled = true;
    v.interrupts = (a.flags & SA_RESTART) == 0;
    return v;
  }
  return v;
}

// The action the kernel has for sig (the shim's restorer in place of the application's
// makes no difference here).
inline bool kernelAction(int sig, SignalAction& out) {
  struct {
    uint64_t handler, flags, restorer, mask;
  } k{};
  if (rawSyscall(SYS_rt_sigaction, sig, 0, reinterpret_cast<long>(&k), 8) != 0) return false;
  out.handler = k.handler;
  out.flags = k.flags;
  return true;
}

}  // namespace mig::shim
