// The x86_64 `syscall` instruction, for the two places that cannot go through libc:
// the freestanding restorer (there is no libc) and the shim's signal handlers and
// early start (libc's wrappers set errno and may be interposed). It lives with the
// restorer because the restorer's build (-ffreestanding -nostdlib) is what keeps it
// free of libc for both. Returns the kernel's value: a negative errno on failure.
#pragma once

namespace mig::arch {

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

}  // namespace mig::arch
