/* Benchmark subject for bench/lazy_restart_bench.sh: holds MIB MiB of written
   anonymous memory, prints READY, then waits for a line on stdin (none comes
   before the checkpoint; the restart's stdin has one). Once it has the line it
   prints the CLOCK_REALTIME in microseconds ("first <us>"), reads every page
   ("all <us>"), and exits. */
#include "job_common.h"

#include <time.h>
#include <unistd.h>

static long long now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
  size_t len = mib << 20;
  unsigned char* p = hold_written_memory(mib);
  if (p == NULL) return 1;
  char c;
  while (read(0, &c, 1) != 1) {
  }
  printf("first %lld\n", now_us());
  uint64_t sum = 0;
  for (size_t i = 0; i < len; i += 4096) sum += p[i];
  printf("all %lld sum %llu\n", now_us(), (unsigned long long)sum);
  return 0;
}
