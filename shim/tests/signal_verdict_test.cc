// The rule of signal_verdict.h, on actions of the test's own.
#include "shim/signal_verdict.h"

#include <doctest/doctest.h>

namespace mig::shim {
namespace {

constexpr uint64_t kHandler = 0x1000;

struct Actions {
  SignalAction of[65];
  bool operator()(int sig, SignalAction& a) const {
    a = of[sig];
    return true;
  }
};

TEST_CASE("signal verdict: the lowest signal that decides, as the kernel takes them") {
  Actions acts{};
  acts.of[SIGUSR1] = {kHandler, SA_RESTART};
  acts.of[SIGUSR2] = {kHandler, 0};
  acts.of[SIGPIPE] = {reinterpret_cast<uint64_t>(SIG_IGN), 0};
  // A handler with SA_RESTART first: the call is made again, though USR2's lacks it.
  Verdict v = signalVerdict(signalBit(SIGUSR1) | signalBit(SIGUSR2), acts);
  CHECK(v.sig == SIGUSR1);
  CHECK(v.handled);
  CHECK_FALSE(v.interrupts);
  // Without it: EINTR.
  v = signalVerdict(signalBit(SIGUSR2), acts);
  CHECK(v.sig == SIGUSR2);
  CHECK(v.interrupts);
  // Ignored ones (SIG_IGN, a default that does nothing) do not decide.
  v = signalVerdict(signalBit(SIGPIPE) | signalBit(SIGCHLD) | signalBit(SIGWINCH), acts);
  CHECK(v.sig == 0);
  CHECK_FALSE(v.stopped);
  // A default that ends the process ends the call, not handled.
  v = signalVerdict(signalBit(SIGHUP) | signalBit(SIGUSR2), acts);
  CHECK(v.sig == SIGHUP);
  CHECK(v.interrupts);
  CHECK_FALSE(v.handled);
}

TEST_CASE("signal verdict: a default stop does not decide; a handler after it does") {
  Actions acts{};
  acts.of[SIGRTMIN] = {kHandler, 0};
  Verdict v = signalVerdict(signalBit(SIGTSTP), acts);
  CHECK(v.sig == 0);
  CHECK(v.stopped);
  v = signalVerdict(signalBit(SIGTTIN) | signalBit(SIGRTMIN), acts);
  CHECK(v.sig == SIGRTMIN);
  CHECK(v.interrupts);
}

}  // namespace
}  // namespace mig::shim
