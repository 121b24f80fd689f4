/* stack_growth: the main thread's stack must go on growing after a restore. Each
 * step recurses deeper than any step before it (64 KiB of locals per level, up to
 * 4 MiB at step 30), so every step after a checkpoint needs stack the saved image
 * never had: a restored stack that is not a grows-down mapping faults there (a
 * program's deep recursion, or redis' lzf_compress with its 256 KiB table on the
 * stack when it saves). The sums printed are deterministic.
 *
 * usage: stack_growth [STEPS]     (default 30 steps of 100 ms)
 */
#include "feature.h"

enum { FRAME = 64 * 1024, STEP_MS = 100 };

/* noinline and the volatile frame: the compiler must keep every level's locals. */
__attribute__((noinline)) static uint64_t dive(int depth, uint64_t seed)
{
  volatile unsigned char frame[FRAME];
  for (int i = 0; i < FRAME; i += 512) frame[i] = (unsigned char)(seed + (uint64_t)i);
  uint64_t below = depth > 1 ? dive(depth - 1, seed * 6364136223846793005ULL + 1) : 0;
  uint64_t sum = below;
  for (int i = 0; i < FRAME; i += 512) sum = sum * 31 + frame[i];
  return sum;
}

int main(int argc, char **argv)
{
  int steps = argc > 1 ? parse_int(argv[1]) : 30;
  printf("stack_growth: %d steps\n", steps);
  for (int i = 1; i <= steps; i++) {
    int depth = 2 * i;  /* 128 KiB more stack each step */
    printf("step %d depth %d (%d KiB) sum %016llx\n", i, depth, depth * FRAME / 1024,
           (unsigned long long)dive(depth, (uint64_t)i));
    feature_step(i);
    sleep_ms(STEP_MS);
  }
  printf("PASS\n");
  fflush(stdout);
  return 0;
}
