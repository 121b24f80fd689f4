// The restorer's system calls: their numbers, the raw call (raw_syscall.h: no libc,
// no errno, a negative errno on failure) and the assembly helpers of start.S.
#pragma once

#include "restore/arch/x86_64/raw_syscall.h"

#include <stdint.h>

namespace mig::restore::sys {

// System call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
enum : long {
  kRead = 0,
  kWrite = 1,
  kClose = 3,
  kFstat = 5,
  kMmap = 9,
  kMprotect = 10,
  kMunmap = 11,
  kRtSigaction = 13,
  kRtSigprocmask = 14,
  kRtSigreturn = 15,
  kPread64 = 17,
  kPreadv = 295,
  kIoctl = 16,
  kMremap = 25,
  kMadvise = 28,
  kShmat = 30,
  kShmctl = 31,
  kSetitimer = 38,
  kGetpid = 39,
  kClone = 56,
  kExecve = 59,
  kSendto = 44,
  kSendmsg = 46,
  kWait4 = 61,
  kKill = 62,
  kFcntl = 72,
  kFtruncate = 77,
  kGetuid = 102,
  kRtSigpending = 127,
  kRtSigtimedwait = 128,
  kRtSigqueueinfo = 129,
  kSigaltstack = 131,
  kPrctl = 157,
  kArchPrctl = 158,
  kGettid = 186,
  kFutex = 202,
  kSetTidAddress = 218,
  kTimerCreate = 222,
  kTimerSettime = 223,
  kTimerDelete = 226,
  kClockGettime = 228,
  kExitGroup = 231,
  kTgkill = 234,
  kOpenat = 257,
  kSetRobustList = 273,
  kRtTgsigqueueinfo = 297,
  kPrlimit64 = 302,
  kMemfdCreate = 319,
  kUserfaultfd = 323,
  kRseq = 334,
};

using arch::rawSyscall;

}  // namespace mig::restore::sys

// Assembly helpers (arch/x86_64/start.S).
extern "C" {

// Sets the stack pointer to `stackTop` (aligned down to 16) and calls fn(arg) there;
// never returns. Used to continue on the private stack, in a moved copy of the code.
[[noreturn]] void mig_switch_stack(uint64_t stackTop, void (*fn)(void*), void* arg);

// clone(2) that starts the child on `stackTop` running fn(arg) (which must not return).
// Returns the child's TID (or a negative errno) in the parent.
long mig_clone(uint64_t flags, uint64_t stackTop, uint64_t parentTid, uint64_t childTid,
               uint64_t tls, void (*fn)(void*), void* arg);

// The last steps of a restored thread, done with registers only: switch the stack pointer
// to `ucontext` (the saved signal frame); munmap(unmapAddr, unmapLen) if `unmapLen` != 0
// and either `onStacks` is 0 or this thread's atomic decrement of *onStacks took it to 0
// (the threads still on the temporary stacks: the last to leave unmaps them, so that
// nobody waits for it); then rt_sigreturn.
[[noreturn]] void mig_resume(uint64_t ucontext, uint64_t unmapAddr, uint64_t unmapLen,
                             uint32_t* onStacks);

// mig_resume's steps, then instead of rt_sigreturn a jump to entry(ucontext) with the
// stack pointer 512 bytes below the frame (and a zero return address on it).
[[noreturn]] void mig_resume_call(uint64_t ucontext, uint64_t unmapAddr, uint64_t unmapLen,
                                  uint32_t* onStacks, uint64_t entry);
}
