// Syscall user dispatch (Linux >= 5.11) for the calling thread: once enabled, every
// system call made from outside the shim's own code while the thread's selector byte
// says BLOCK is turned into a SIGSYS (see sigsys_handler.cc). Enabling is per thread
// and is neither inherited by clone/fork nor kept across exec, so each application
// thread enables it for itself. The constants are here because Debian 12's headers
// may predate them.
#pragma once

#include "shim/runtime.h"

#include <cstdint>

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#endif
#ifndef PR_SYS_DISPATCH_OFF
#define PR_SYS_DISPATCH_OFF 0
#endif
#ifndef PR_SYS_DISPATCH_ON
#define PR_SYS_DISPATCH_ON 1
#endif
#ifndef SYSCALL_DISPATCH_FILTER_ALLOW
#define SYSCALL_DISPATCH_FILTER_ALLOW 0
#endif
#ifndef SYSCALL_DISPATCH_FILTER_BLOCK
#define SYSCALL_DISPATCH_FILTER_BLOCK 1
#endif
#ifndef SYS_USER_DISPATCH
#define SYS_USER_DISPATCH 2  // si_code of a dispatched system call's SIGSYS
#endif

namespace mig::forward {

// The kernel reads this byte at every system call of a thread with dispatch on; any
// value but ALLOW or BLOCK kills the process, so only those two are ever stored.
extern thread_local volatile uint8_t t_selector MIG_TLS;
// Dispatch is on for this thread (in this process: a restore starts with it off).
extern thread_local uint8_t t_sudOn MIG_TLS;

// The shim's executable segment: system calls made from there are never dispatched.
struct CodeRange {
  uint64_t start;
  uint64_t end;
  bool contains(uint64_t a) const { return a >= start && a < end; }
};
CodeRange shimText();

// Turns dispatch on for the calling thread with t_selector as its selector (left at
// its current value). Returns false when the kernel refuses (too old, or seccomp).
bool enableSud();
void disableSud();

inline void allowSyscalls() { t_selector = SYSCALL_DISPATCH_FILTER_ALLOW; }
inline void blockSyscalls() { t_selector = SYSCALL_DISPATCH_FILTER_BLOCK; }

}  // namespace mig::forward
