// The few C library functions the compiler may call on its own (struct copies and
// clears), for the freestanding restorer. String instructions keep them small and
// stop the compiler from turning the loops back into calls to themselves.
#include <stdint.h>

#pragma GCC visibility push(hidden)

extern "C" {

void* memcpy(void* dst, const void* src, __SIZE_TYPE__ n) {
  void* d = dst;
  asm volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  return dst;
}

void* memmove(void* dst, const void* src, __SIZE_TYPE__ n) {
  auto d = reinterpret_cast<uintptr_t>(dst);
  auto s = reinterpret_cast<uintptr_t>(src);
  if (d <= s || d >= s + n) return memcpy(dst, src, n);
  // Overlapping with dst above src: copy backwards.
  void* dl = reinterpret_cast<void*>(d + n - 1);
  const void* sl = reinterpret_cast<const void*>(s + n - 1);
  asm volatile("std\n\trep movsb\n\tcld" : "+D"(dl), "+S"(sl), "+c"(n) : : "memory");
  return dst;
}

void* memset(void* dst, int c, __SIZE_TYPE__ n) {
  void* d = dst;
  asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return dst;
}

int memcmp(const void* a, const void* b, __SIZE_TYPE__ n) {
  const auto* x = static_cast<const unsigned char*>(a);
  const auto* y = static_cast<const unsigned char*>(b);
  for (__SIZE_TYPE__ i = 0; i < n; ++i) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}

__SIZE_TYPE__ strlen(const char* s) {
  __SIZE_TYPE__ n = 0;
  while (s[n] != '\0') {
    asm volatile("" : "+r"(n));  // keep this a loop, not a call to strlen
    ++n;
  }
  return n;
}

}  // extern "C"

#pragma GCC visibility pop
