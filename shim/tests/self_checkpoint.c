/* self_checkpoint: checkpoints itself with mig_checkpoint (shim/mig.h) halfway
 * through a sum, and says which side of the call it is on: "returned 0" in the
 * process that goes on, "returned 1" when `migctl restart IMAGE` continues it.
 * With BAD_IMAGE it first tries a path that cannot be written and reports the
 * failure (and goes on). Without mig it reports ENOSYS and exits 1.
 * usage: self_checkpoint IMAGE [BAD_IMAGE] */
#include "mig.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  unsigned long long sum = 0, i = 1;
  for (; i <= 1000; ++i) sum += i * i;
  printf("before: sum %llu\n", sum);
  char why[256] = "";
  if (argc > 2) {
    int r = mig_checkpoint(argv[2]);
    int err = errno;
    mig_last_error(why, sizeof(why));
    printf("bad path: returned %d (%s): %s\n", r, strerror(err), why);
  }
  int r = mig_checkpoint(argv[1]);
  if (r < 0) {
    int err = errno;
    printf("mig_checkpoint failed: %s\n", strerror(err));
    return 1;
  }
  printf("after: returned %d\n", r);
  for (; i <= 2000; ++i) sum += i * i;
  printf("done: sum %llu\n", sum);
  return 0;
}
