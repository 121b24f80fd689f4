/* tree_job N: a tree of N small processes (the root and N-1 children) that wait
 * for ever, for bench/tree_bench.sh. Prints READY once every child is running. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 1;
  int ready[2];
  if (pipe(ready) != 0) return 1;
  for (int i = 1; i < n; i++) {
    pid_t p = fork();
    if (p < 0) return 1;
    if (p == 0) {
      close(ready[0]);
      if (write(ready[1], "x", 1) != 1) _exit(1);
      close(ready[1]);
      for (;;) pause();
    }
  }
  close(ready[1]);
  char c;
  for (int i = 1; i < n; i++) {
    if (read(ready[0], &c, 1) != 1) return 1;
  }
  printf("READY\n");
  fflush(stdout);
  for (;;) pause();
}
