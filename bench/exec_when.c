/* Benchmark subject: a program started under mig that becomes another once told to.
   Prints "READY <pid>" on stderr, waits until the file GO exists (checked every 10 ms),
   then executes PROGRAM with its arguments. So a benchmark can move the job first and
   time a real program (GNU sort, bench/sort_bench.sh) from its start on the job's new
   host.
   usage: exec_when GO PROGRAM [ARG...] */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: exec_when GO PROGRAM [ARG...]\n");
    return 2;
  }
  fprintf(stderr, "READY %d\n", (int)getpid());
  struct stat st;
  while (stat(argv[1], &st) != 0) usleep(10000);
  execvp(argv[2], argv + 2);
  perror(argv[2]);
  return 127;
}
