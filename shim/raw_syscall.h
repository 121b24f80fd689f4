// Raw system calls that do not touch errno, for code that runs in signal handlers
// and before libc is ready. Return the kernel's value (negative errno on failure).
#pragma once

#include <cstdint>

namespace mig::shim {

inline long rawSyscall(long n, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) {
  long ret;
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  register long r9 asm("r9") = f;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
}

}  // namespace mig::shim
