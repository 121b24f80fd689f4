// The few instructions of the forwarding machinery that must be written by hand
// (trampolines.cc, x86_64): they are in the shim's code, so the system calls they
// make are never dispatched, and they work with registers and a given stack only.
#pragma once

#include <cstdint>

extern "C" {

// A signal restorer (sa_restorer): rt_sigreturn from inside the shim. Installed for
// every handler once forwarding is active, so returning from a handler never traps.
void mig_fwd_restorer();

// rt_sigreturn with the stack pointer at `ucontext` (the struct ucontext of a signal
// frame): returns into that frame's context.
[[noreturn]] void mig_fwd_sigreturn_at(uint64_t ucontext);

// clone/clone3 whose child starts on its own stack: system call `nr` with a0..a4. The
// parent gets the result. The child, on its new stack, calls childSetup() (if not
// null) on a stack below childFrame, then does rt_sigreturn with the stack pointer at
// childFrame: a signal frame built there beforehand, which holds the parent's
// context with rax = 0 (the child's view of the call).
long mig_fwd_clone(long nr, long a0, long a1, long a2, long a3, long a4, uint64_t childFrame,
                   void (*childSetup)());
}
