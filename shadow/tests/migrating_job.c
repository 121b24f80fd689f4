/* migrating_job: the job of loopback_migration_test.sh. Prints "step N pid P" per
 * step through stdio (line-buffered, to whatever stdout is), appends "raw N" to
 * RAW_FILE with a raw write(2) system call, and sleeps 100 ms per step. On SIGTERM
 * it prints "got SIGTERM" and exits with status 42.
 * usage: migrating_job STEPS RAW_FILE */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t terminated;
static void on_term(int sig) { (void)sig; terminated = 1; }

int main(int argc, char **argv)
{
  if (argc != 3) {
    fprintf(stderr, "usage: migrating_job STEPS RAW_FILE\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGTERM, on_term);
  int steps = atoi(argv[1]);
  int raw = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (raw < 0) {
    perror(argv[2]);
    return 1;
  }
  for (int i = 1; i <= steps; i++) {
    if (terminated) {
      printf("got SIGTERM\n");
      return 42;
    }
    printf("step %d pid %d\n", i, (int)getpid());
    char line[32];
    int n = snprintf(line, sizeof line, "raw %d\n", i);
    if (syscall(SYS_write, raw, line, (size_t)n) != n) {
      perror("write");
      return 1;
    }
    struct timespec ts = {0, 100 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0 && !terminated) {
    }
  }
  return terminated ? 42 : 0;
}
