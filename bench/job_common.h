/* What the memory-holding benchmark jobs share: MIB MiB of anonymous memory with
   every page written (so that each is really there for a checkpoint to copy), the
   READY line the bench scripts wait for before they act, and the cheap
   pseudo-random walk that picks the pages they write afterwards. */
#ifndef MIG_BENCH_JOB_COMMON_H
#define MIG_BENCH_JOB_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum { kJobPage = 4096 };

/* MIB MiB, page i holding (i | 1) in its first byte; READY printed once all are
   written. NULL (and nothing printed) when it cannot be had. */
static unsigned char* hold_written_memory(size_t mib) {
  size_t len = mib << 20;
  unsigned char* p = malloc(len);
  if (p == NULL) return NULL;
  for (size_t i = 0; i < len; i += kJobPage) p[i] = (unsigned char)(i / kJobPage) | 1;
  printf("READY\n");
  fflush(stdout);
  return p;
}

/* xorshift64: the next step of the walk in *x. */
static inline uint64_t next_random(uint64_t* x) {
  *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
  return *x;
}

#endif
