/* Benchmark subject for periodic checkpoints: a compute job over MIB MiB (touched
   first; READY then) that does UNITS units of work, each some arithmetic and one
   written page at a pseudo-random place, then prints its run time (from READY) and
   how many MiB it wrote per second.
   usage: chain_job MIB UNITS SPIN   (SPIN: arithmetic steps per unit) */
#include "job_common.h"

#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  size_t mib = strtoul(argv[1], NULL, 10), units = strtoul(argv[2], NULL, 10), spin = strtoul(argv[3], NULL, 10);
  size_t pages = (mib << 20) / 4096;
  if (pages == 0) return 1;
  unsigned char* p = hold_written_memory(mib);
  if (p == NULL) return 1;
  double t0 = now();
  uint64_t x = 88172645463325252ull, acc = 0;
  for (size_t u = 0; u < units; u++) {
    for (size_t k = 0; k < spin; k++) acc += next_random(&x);
    p[(x % pages) * 4096 + (x >> 52) % 4096] += (unsigned char)acc;
  }
  double t = now() - t0;
  printf("DONE %.3f s, %.1f MiB/s written, %llx\n", t, units * 4096.0 / (1 << 20) / t, (unsigned long long)(acc & 0xff));
  return 0;
}
