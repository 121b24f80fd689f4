/* cpu_job: the job of drain.sh and owner_returns.sh. Prints "STEP 1".."STEP 3", each
 * after a fixed computation (its result on the line before), then works on until the file
 * GO exists: "spin" computes all the while (a CPU-bound job), "idle" sleeps 20 ms
 * between looks. Then "STEP 4".."STEP 8" the same way and "done". What it prints
 * depends on nothing but the computations, so every run prints the same. It then exits
 * with STATUS (default 0): a chosen non-zero status shows that a moved job's end reaches
 * its parent as it is (slurm.sh: Slurm's accounting).
 * usage: cpu_job GO spin|idle [STATUS] */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* About 5 ms of arithmetic: an xorshift sequence from a seed. */
static uint64_t chunk(uint64_t seed)
{
  uint64_t x = seed * 2654435761u + 1;
  for (int i = 0; i < 2000000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  return x;
}

static void step(int n)
{
  uint64_t sum = 0;
  for (int i = 0; i < 10; i++)
    sum += chunk((uint64_t)n * 100 + (uint64_t)i);
  printf("sum %d %016llx\nSTEP %d\n", n, (unsigned long long)sum, n);
}

int main(int argc, char **argv)
{
  char *end = NULL;
  long status = argc == 4 ? strtol(argv[3], &end, 10) : 0;
  if (argc < 3 || argc > 4 || (strcmp(argv[2], "spin") != 0 && strcmp(argv[2], "idle") != 0) ||
      (argc == 4 && (*argv[3] == '\0' || *end != '\0' || status < 0 || status > 255))) {
    fprintf(stderr, "usage: cpu_job GO spin|idle [STATUS 0-255]\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  int spin = strcmp(argv[2], "spin") == 0;
  for (int n = 1; n <= 3; n++)
    step(n);
  volatile uint64_t sink = 0;
  uint64_t seed = 0;
  while (access(argv[1], F_OK) != 0) {
    if (spin) {
      /* A look for GO after every 10 chunks: after a move each look is a call home, and
       * the job must stay CPU-bound there (balance counts it as wanting a whole CPU). */
      for (int i = 0; i < 10; i++)
        sink += chunk(++seed);
    } else {
      struct timespec ts = {0, 20 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  (void)sink;
  for (int n = 4; n <= 8; n++)
    step(n);
  printf("done\n");
  return (int)status;
}
