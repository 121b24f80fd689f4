// Signals under syscall user dispatch. The shim needs SIGSYS for itself and needs
// every signal handler to return through its own rt_sigreturn (a return through
// libc's restorer would be dispatched like any other call), and SIGSYS must never be
// blocked while an application thread makes a system call (the kernel would kill the
// process). So once forwarding is active, sigaction and sigprocmask are emulated:
// handlers get the shim's restorer and lose SIGSYS from their masks, masks lose
// SIGSYS, and the application's own SIGSYS action is kept aside.
#pragma once

#include <csignal>
#include <cstdint>

namespace mig::forward {

inline constexpr uint64_t kSigsysBit = 1ull << (SIGSYS - 1);

// The SIGSYS handler (sigsys_handler.cc).
void sigsysHandler(int sig, siginfo_t* info, void* context);

// Installs the SIGSYS handler and gives every installed handler the shim's restorer
// (process-wide; run once at activation).
void takeOverSignals();

// A SIGSYS that is not a dispatched system call (kill -SYS, seccomp): do what the
// application asked for SIGSYS.
void deliverToApplication(int sig, siginfo_t* info, void* context);

}  // namespace mig::forward
