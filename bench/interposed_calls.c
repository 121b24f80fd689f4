/* interposed_calls: nanoseconds per call of the calls a job makes most often, for
 * bench/interposition_bench.sh, which runs it natively and under libmig.so (before
 * any move), in turn, in the same run.
 *
 * A shared 2-core machine runs ten other processes beside it: wall-clock time would
 * count every moment another process had the CPU. So each figure is CPU time of this
 * thread (CLOCK_THREAD_CPUTIME_ID, which counts the system calls' kernel time too),
 * over many short batches of calls, and the batch at the 10th percentile is taken:
 * the fastest batches are the ones no context switch or cold cache slowed, and the
 * percentile rather than the minimum keeps one lucky batch out. The loop itself is
 * included (see "empty loop").
 * With "thread", an idle thread is started first, as libmig.so's control thread is: the
 * kernel's cost of a second thread sharing the fd table (each fd's reference counted
 * at every call, which a process alone skips) and glibc's cancellation-point work,
 * apart from anything the shim's wrappers do. With "ownthread", the idle thread first
 * leaves the fd table for a copy of its own, as libmig.so's control thread does: what
 * is left is glibc's (a process that ever had a second thread takes the cancellation
 * path of each cancellable call), the floor for a control thread made by pthread_create.
 * usage: interposed_calls [COUNT [thread|ownthread]]     (calls per figure, default 2000000) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double cpu_ns(void)
{
  struct timespec ts;
  syscall(SYS_clock_gettime, CLOCK_THREAD_CPUTIME_ID, &ts); /* not the interposed function */
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
static void op_clock_gettime_realtime(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  sink += ts.tv_nsec;
}
static void op_getpid(void) { sink += getpid(); }
static void op_mutex(void)
{
  pthread_mutex_lock(&mutex);
  sink++;
  pthread_mutex_unlock(&mutex);
}

static void *idle(void *arg)
{
  for (;;) pause();
  return arg;
}

static volatile int unshared;

static void *idle_own_table(void *arg)
{
  if (unshare(CLONE_FILES) != 0) perror("unshare");
  unshared = 1;
  for (;;) pause();
  return arg;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

enum { kBatches = 400 };

/* COUNT calls in kBatches batches; the 10th-percentile batch's ns per call. */
static double time_op(void (*op)(void), long count)
{
  static double per[kBatches];
  long batch = count / kBatches > 0 ? count / kBatches : 1;
  for (long i = 0; i < batch; i++) op(); /* warm: the first call resolves symbols */
  for (int b = 0; b < kBatches; b++) {
    double start = cpu_ns();
    for (long i = 0; i < batch; i++) op();
    per[b] = (cpu_ns() - start) / batch;
  }
  qsort(per, kBatches, sizeof per[0], cmp_double);
  return per[kBatches / 10];
}

int main(int argc, char **argv)
{
  long count = argc > 1 ? atol(argv[1]) : 2000000;
  if (argc > 2 && (strcmp(argv[2], "thread") == 0 || strcmp(argv[2], "ownthread") == 0)) {
    const int own = strcmp(argv[2], "ownthread") == 0;
    pthread_t t;
    if (pthread_create(&t, NULL, own ? idle_own_table : idle, NULL) != 0) { perror("pthread_create"); return 1; }
    while (own && !unshared) sched_yield();
  }
  null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd < 0) { perror("/dev/null"); return 1; }
  struct { const char *name; void (*op)(void); long count; } ops[] = {
    {"empty loop", op_empty, count},
    {"write 64 B to /dev/null", op_write64, count / 4},
    {"clock_gettime MONOTONIC", op_clock_gettime, count},
    {"clock_gettime REALTIME", op_clock_gettime_realtime, count},
    {"getpid", op_getpid, count},
    {"mutex lock+unlock", op_mutex, count},
  };
  for (unsigned i = 0; i < sizeof ops / sizeof ops[0]; i++)
    printf("%s\t%.2f\n", ops[i].name, time_op(ops[i].op, ops[i].count));
  return 0;
}
