/* counter: the simplest feature program. A counter printed through stdio,
 * with a nanosleep between steps; the clocks read through the vDSO must keep
 * working and CLOCK_MONOTONIC must never go backwards, and every nanosleep
 * must sleep at least what it asked for (a checkpoint in the middle of one
 * sleeps only the remaining time, but never less). Exits with status 3, so
 * that the harness also checks that the exit status survives a restart.
 *
 * usage: counter [STEPS]     (default 30 steps of 100 ms)
 */
#include "feature.h"

#include <sys/time.h>

enum { STEP_MS = 100, EXIT_STATUS = 3 };

int main(int argc, char **argv)
{
  int steps = argc > 1 ? parse_int(argv[1]) : 30;
  uint64_t acc = 1;
  int64_t prev = mono_ns();

  printf("counter: %d steps\n", steps);
  for (int i = 1; i <= steps; i++) {
    acc = acc * 6364136223846793005ULL + (uint64_t)i * i;
    printf("count %d square %d acc %016llx\n", i, i * i, (unsigned long long)acc);
    feature_step(i);

    int64_t before = mono_ns();
    CHECK(before >= prev, "CLOCK_MONOTONIC went backwards by %lld ns", (long long)(prev - before));
    sleep_ms(STEP_MS);
    int64_t after = mono_ns();
    /* The kernel never wakes a nanosleep early; allow 1 ms for a restore
     * that measures its clock offset imperfectly. */
    CHECK(after - before >= STEP_MS * 1000000LL - 1000000,
          "nanosleep(%d ms) returned after only %lld us", STEP_MS,
          (long long)(after - before) / 1000);
    prev = after;

    struct timeval tv;
    CHECK_SYS(gettimeofday(&tv, NULL));
    CHECK(time(NULL) > 1600000000, "time() is before 2020");
  }
  printf("final acc %016llx\n", (unsigned long long)acc);
  printf("monotonic ok\n");
  printf("PASS\n");
  fflush(stdout);
  return EXIT_STATUS;
}
