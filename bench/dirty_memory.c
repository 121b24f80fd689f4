/* Benchmark subject for pre-copy: holds N MiB of written anonymous memory (prints
   READY once it is all touched), then keeps writing RATE MiB per second of it, one
   word per page at pages spread over the whole region, in 10 ms slices.
   usage: dirty_memory [MIB [RATE_MIB_PER_S]]   (defaults 1024 and 16) */
#include "job_common.h"

#include <time.h>

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
  size_t rate = argc > 2 ? strtoul(argv[2], NULL, 10) : 16;
  size_t pages = (mib << 20) / 4096;
  if (pages == 0) return 1;
  unsigned char* p = hold_written_memory(mib);
  if (p == NULL) return 1;
  size_t perSlice = (rate << 20) / 4096 / 100;  /* pages per 10 ms */
  uint64_t x = 88172645463325252ull;
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (;;) {
    for (size_t k = 0; k < perSlice; k++) {
      next_random(&x);
      p[(x % pages) * 4096 + (x >> 52) % 4096] += 1;
    }
    next.tv_nsec += 10 * 1000 * 1000;
    if (next.tv_nsec >= 1000000000) next.tv_sec++, next.tv_nsec -= 1000000000;
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
  }
}
