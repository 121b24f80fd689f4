/* static_member: a statically linked program (libmig.so cannot be preloaded into
 * it), for the test that a tree with such a member is refused as a whole. Prints
 * its PID, then "tick N" 30 times, 100 ms apart, and exits 0. */
#include "feature.h"

int main(void)
{
  printf("static member %d\n", getpid());
  fflush(stdout);
  for (int i = 1; i <= 30; i++) {
    sleep_ms(100);
    printf("tick %d\n", i);
    fflush(stdout);
  }
  return 0;
}
