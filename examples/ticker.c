/* ticker: the example job of examples/live-migration.sh, an ordinary program
 * that knows nothing about mig. Every INTERVAL_MS (default 1000) it prints
 *   ticker: tick K of COUNT, pid P, sum of squares 1..K = S
 * to stdout and appends "tick K" to FILE; after COUNT ticks it prints
 * "ticker: done after COUNT ticks, pid P" and exits 0. Nothing it prints
 * depends on the host it runs on, so a run that was migrated from host to host
 * prints exactly what an undisturbed run prints, and the PID in every line
 * shows that its PID never changed.
 *
 * usage: ticker COUNT FILE [INTERVAL_MS]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int number(const char *s, const char *what)
{
  char *end;
  long v = strtol(s, &end, 10);
  if (*end != '\0' || end == s || v <= 0 || v > 1000000) {
    fprintf(stderr, "ticker: bad %s '%s'\n", what, s);
    exit(2);
  }
  return (int)v;
}

int main(int argc, char **argv)
{
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: ticker COUNT FILE [INTERVAL_MS]\n");
    return 2;
  }
  int count = number(argv[1], "COUNT");
  int interval_ms = argc > 3 ? number(argv[3], "INTERVAL_MS") : 1000;
  int fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "ticker: cannot open %s: %s\n", argv[2], strerror(errno));
    return 1;
  }

  long long sum = 0;
  for (int k = 1; k <= count; k++) {
    sum += (long long)k * k;
    printf("ticker: tick %d of %d, pid %d, sum of squares 1..%d = %lld\n", k, count, (int)getpid(), k, sum);
    fflush(stdout);
    char line[32];
    int n = snprintf(line, sizeof line, "tick %d\n", k);
    if (write(fd, line, (size_t)n) != n) {
      fprintf(stderr, "ticker: cannot append to %s: %s\n", argv[2], strerror(errno));
      return 1;
    }
    struct timespec ts = { interval_ms / 1000, (interval_ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  close(fd);
  printf("ticker: done after %d ticks, pid %d\n", count, (int)getpid());
  return 0;
}
