/* Benchmark subject: the cost of write(2) on stdout, before and after a migration.
   Prints "READY <pid>", then waits until the file GO exists (checked every 10 ms); then
   times COUNT writes of SIZE bytes to stdout and prints, on stderr,
   "RESULT <ns per write> <MB/s>", and exits.
   usage: forwarded_io GO COUNT SIZE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: forwarded_io GO COUNT SIZE\n");
    return 2;
  }
  long count = atol(argv[2]);
  size_t size = strtoul(argv[3], NULL, 10);
  char* buf = malloc(size);
  if (buf == NULL) return 1;
  memset(buf, 'x', size);
  fprintf(stderr, "READY %d\n", (int)getpid());
  struct stat st;
  while (stat(argv[1], &st) != 0) usleep(10000);
  double start = now();
  for (long i = 0; i < count; i++) {
    if (write(1, buf, size) != (ssize_t)size) {
      perror("write");
      return 1;
    }
  }
  double secs = now() - start;
  fprintf(stderr, "RESULT %.0f %.1f\n", secs * 1e9 / count, (double)count * size / secs / 1e6);
  return 0;
}
