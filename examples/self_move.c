/* self_move: a program that moves itself with mig's self-migration API (mig.h).
 * It does a little work, moves itself to each NODE in turn, and after each move
 * says where it runs, where its home is, and that its PID did not change; its
 * output goes home (to whatever its stdout was where it started). It is an ordinary
 * C program: nothing to link, it runs with or without mig.
 *
 *   migctl run -- self_move b c        # a -> b -> c (on host a, shadowd on each)
 *   migctl run -- self_move b a        # a -> b -> a
 *   migctl run -- self_move anywhere   # to the least loaded other host
 *
 * Exit status: 0 done; 1 a move failed (it says why: mig_last_error); 3 not running
 * under mig (mig_move: ENOSYS); 2 usage.
 *
 * usage: self_move NODE...   (NODE: a name in shadowd's nodes file, HOST:PORT, or
 *                             "anywhere") */
#include "mig.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static unsigned long long sum;
static unsigned long long next = 1;

/* Some work between moves whose result does not depend on where it ran. */
static void work(int steps) {
  for (int i = 0; i < steps; ++i, ++next) sum += next * next;
  printf("self_move: sum of squares 1..%llu = %llu\n", next - 1, sum);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: self_move NODE...\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  char here[256], home[256];
  if (mig_where(here, sizeof(here)) != 0 || mig_home(home, sizeof(home)) != 0) {
    printf("self_move: not running under mig (%s)\n", strerror(errno));
    return 3;
  }
  const pid_t pid = getpid();
  printf("self_move: started on %s, home %s\n", here, home);
  work(1000);
  for (int i = 1; i < argc; ++i) {
    printf("self_move: moving to %s\n", argv[i]);
    if (mig_move(strcmp(argv[i], "anywhere") == 0 ? MIG_ANYWHERE : argv[i]) != 0) {
      char why[256] = "";
      int err = errno;
      mig_last_error(why, sizeof(why));
      printf("self_move: cannot move to %s: %s: %s\n", argv[i], strerror(err), why);
      return 1;
    }
    if (mig_where(here, sizeof(here)) != 0 || mig_home(home, sizeof(home)) != 0) {
      printf("self_move: mig_where/mig_home failed after the move: %s\n", strerror(errno));
      return 1;
    }
    printf("self_move: now on %s, home %s, PID %s\n", here, home, getpid() == pid ? "unchanged" : "CHANGED");
    work(1000);
  }
  printf("self_move: done\n");
  return 0;
}
