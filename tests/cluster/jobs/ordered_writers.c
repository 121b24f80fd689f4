/* ordered_writers.c: the job of the loopback test's pipelined-writes check. THREADS
 * threads take strict turns (mutex and condition variable) writing one line each to
 * stdout with write(2), ROUNDS rounds, pausing between rounds so that a migration
 * lands mid-run; then the main thread prints BURST lines through stdio as fast as it
 * can and exits at once. With stdout a pipe at home, every write after the migration
 * is pipelined: the output must still be exactly round by round, thread by thread,
 * and the burst must be complete when the job's end reaches its parent. Each line is
 * padded to 1 KiB so that a reader who pauses lets the pipe fill up and writes wait;
 * progress ("at round R", every 10 rounds) goes to stderr. With HOLD, the burst waits
 * until the file HOLD exists (at most 60 s): a test's last hop then lands before the
 * job's end, however slow the machine.
 *
 * usage: ordered_writers ROUNDS BURST [HOLD] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { kThreads = 4 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_changed = PTHREAD_COND_INITIALIZER;
static int turn;  /* round * kThreads + thread whose line is next */
static int rounds;

static void *writer(void *arg) {
  int me = (int)(long)arg;
  for (int r = 0; r < rounds; ++r) {
    pthread_mutex_lock(&lock);
    while (turn != r * kThreads + me) pthread_cond_wait(&turn_changed, &lock);
    char line[1024];
    int n = snprintf(line, sizeof line, "round %d thread %d ", r, me);
    memset(line + n, '.', sizeof line - 1 - (size_t)n);
    line[sizeof line - 1] = '\n';
    n = sizeof line;
    if (write(1, line, (size_t)n) != n) exit(3);
    ++turn;
    pthread_cond_broadcast(&turn_changed);
    pthread_mutex_unlock(&lock);
    if (me == kThreads - 1) {
      if (r % 10 == 0) fprintf(stderr, "at round %d\n", r);
      struct timespec pause = {0, 20 * 1000 * 1000};
      nanosleep(&pause, NULL);
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: ordered_writers ROUNDS BURST [HOLD]\n");
    return 2;
  }
  rounds = atoi(argv[1]);
  int burst = atoi(argv[2]);
  pthread_t t[kThreads];
  for (long i = 0; i < kThreads; ++i) pthread_create(&t[i], NULL, writer, (void *)i);
  for (int i = 0; i < kThreads; ++i) pthread_join(t[i], NULL);
  struct stat st;
  for (int i = 0; argc == 4 && i < 3000 && stat(argv[3], &st) != 0; ++i) {
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  for (int i = 0; i < burst; ++i) printf("burst %d\n", i);
  return 0;  /* exit flushes stdio's last buffer, then the process is gone */
}
