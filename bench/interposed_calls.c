/* interposed_calls: nanoseconds per call of the calls a job makes most often, for
 * bench/interposition_bench.sh, which runs it natively and under libmig.so (before
 * any move) in the same run. Each figure is the best of 5 timed loops of COUNT calls
 * (the minimum filters out a shared machine's interruptions), the loop itself
 * included (see "empty loop").
 * usage: interposed_calls [COUNT]     (default 2000000) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
  struct timespec ts;
  syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts); /* not the interposed function */
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static volatile long sink;
static int null_fd;
static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static char buf[64];

static void op_empty(void) { sink++; }
static void op_write64(void) { sink += write(null_fd, buf, sizeof buf); }
static void op_clock_gettime(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  sink += ts.tv_nsec;
}
static void op_getpid(void) { sink += getpid(); }
static void op_mutex(void)
{
  pthread_mutex_lock(&mutex);
  sink++;
  pthread_mutex_unlock(&mutex);
}

static double time_op(void (*op)(void), long count)
{
  double best = 1e300;
  for (int round = 0; round < 5; round++) {
    double start = now_ns();
    for (long i = 0; i < count; i++) op();
    double per = (now_ns() - start) / count;
    if (per < best) best = per;
  }
  return best;
}

int main(int argc, char **argv)
{
  long count = argc > 1 ? atol(argv[1]) : 2000000;
  null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd < 0) { perror("/dev/null"); return 1; }
  struct { const char *name; void (*op)(void); long count; } ops[] = {
    {"empty loop", op_empty, count},
    {"write 64 B to /dev/null", op_write64, count / 4},
    {"clock_gettime MONOTONIC", op_clock_gettime, count},
    {"getpid", op_getpid, count},
    {"mutex lock+unlock", op_mutex, count},
  };
  for (unsigned i = 0; i < sizeof ops / sizeof ops[0]; i++)
    printf("%s\t%.2f\n", ops[i].name, time_op(ops[i].op, ops[i].count));
  return 0;
}
