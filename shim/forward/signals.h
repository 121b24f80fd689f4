// Signals under syscall user dispatch. The shim needs SIGSYS for itself and needs
// every signal handler to return through its own rt_sigreturn (a return through
// libc's restorer would be dispatched like any other call), and SIGSYS must never be
// blocked while an application thread makes a system call (the kernel would kill the
// process). So once forwarding is active, sigaction and sigprocmask are emulated:
// handlers get the shim's restorer and lose SIGSYS from their masks, masks lose
// SIGSYS, and the application's own SIGSYS action is kept aside.
#pragma once

#include "shim/signal_verdict.h"

#include <csignal>
#include <cstdint>

namespace mig::forward {

inline constexpr uint64_t kSigsysBit = 1ull << (SIGSYS - 1);

using shim::signalBit;
using shim::kIgnoredByDefault;  // default actions other than ending the process
using shim::kStopsByDefault;

// The signals the trapped context of the calling thread's current system call lets in
// (the complement of its mask); 0 outside the SIGSYS handler.
extern thread_local uint64_t t_openSignals __attribute__((tls_model("initial-exec")));

// Of the signals the application lets in, those that end the process when they come
// (left at their default action): a wait for home may let these in, since no handler
// of the application runs for them (connection.cc). The actions are followed as the
// application sets them (emulateSigaction), without a system call.
uint64_t signalsThatEnd();

// Of the signals the application lets in, TSTP, TTIN and TTOU left at their default
// action: a wait for home watches for these too and stops the process when one comes
// (connection.cc stopForSignal).
uint64_t signalsThatStop();

// Of the signals the application lets in, those it has a handler for: a wait for home
// that one of these interrupts asks home to cancel its call (connection.cc), so the
// handler runs at once.
uint64_t signalsHandled();

// The SIGSYS handler (sigsys_handler.cc).
void sigsysHandler(int sig, siginfo_t* info, void* context);

// Installs the SIGSYS handler and gives every installed handler the shim's restorer
// (process-wide; run once at activation).
void takeOverSignals();

// A SIGSYS that is not a dispatched system call (kill -SYS, seccomp): do what the
// application asked for SIGSYS.
void deliverToApplication(int sig, siginfo_t* info, void* context);

}  // namespace mig::forward
