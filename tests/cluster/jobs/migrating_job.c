/* migrating_job: the job of loopback_migration.sh. Prints "step N pid P" per
 * step through stdio (line-buffered, to whatever stdout is), appends "raw N" to
 * RAW_FILE with a raw write(2) system call, and sleeps 100 ms per step. On SIGTERM
 * it prints "got SIGTERM" and exits with status 42. With "echo-stdin", a second
 * thread reads stdin line by line (blocking, while the steps go on) and prints
 * "got LINE" for each.
 * usage: migrating_job STEPS RAW_FILE [echo-stdin] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t terminated;
static void on_term(int sig) { (void)sig; terminated = 1; }

static void *echo_stdin(void *arg)
{
  (void)arg;
  char line[256];
  while (fgets(line, sizeof line, stdin) != NULL)
    printf("got %s", line);
  return NULL;
}

int main(int argc, char **argv)
{
  if (argc != 3 && !(argc == 4 && strcmp(argv[3], "echo-stdin") == 0)) {
    fprintf(stderr, "usage: migrating_job STEPS RAW_FILE [echo-stdin]\n");
    return 2;
  }
  pthread_t reader;
  if (argc == 4 && pthread_create(&reader, NULL, echo_stdin, NULL) != 0) {
    fprintf(stderr, "pthread_create failed\n");
    return 1;
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
