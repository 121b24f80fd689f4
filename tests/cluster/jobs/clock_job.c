/* clock_job: the job of loopback_clock.sh. Prints "pid P", then a report of
 * its clocks tagged "start"; then waits (polling every 100 ms, at most 120 s) for
 * the file DIR/away and reports "away", then for DIR/back and reports "back", and
 * exits 0. A report: "TAG time T", "TAG realtime S", "TAG gettimeofday S" (seconds
 * of time(), clock_gettime(CLOCK_REALTIME) and gettimeofday()), and
 * "TAG timedwait_ms N STATUS": how long (CLOCK_MONOTONIC) a pthread_cond_timedwait
 * with a deadline 1 s ahead of its realtime clock lasted.
 * usage: clock_job DIR */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long ns(const struct timespec *t) { return t->tv_sec * 1000000000LL + t->tv_nsec; }

static void report(const char *tag)
{
  struct timespec rt;
  struct timeval tv;
  time_t t = time(NULL);
  clock_gettime(CLOCK_REALTIME, &rt);
  gettimeofday(&tv, NULL);
  printf("%s time %lld\n%s realtime %lld\n%s gettimeofday %lld\n", tag, (long long)t, tag,
         (long long)rt.tv_sec, tag, (long long)tv.tv_sec);

  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
  struct timespec deadline, start, end;
  pthread_mutex_lock(&m);
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 1;
  clock_gettime(CLOCK_MONOTONIC, &start);
  int e;
  do
    e = pthread_cond_timedwait(&cv, &m, &deadline);
  while (e == 0);  /* spurious wake-ups */
  clock_gettime(CLOCK_MONOTONIC, &end);
  pthread_mutex_unlock(&m);
  printf("%s timedwait_ms %lld %s\n", tag, (ns(&end) - ns(&start)) / 1000000,
         e == ETIMEDOUT ? "ETIMEDOUT" : strerror(e));
}

static int wait_for(const char *dir, const char *name)
{
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  for (int i = 0; i < 1200; i++) {
    if (access(path, F_OK) == 0)
      return 0;
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  printf("gave up waiting for %s\n", path);
  return 3;
}

int main(int argc, char **argv)
{
  if (argc != 2) {
    fprintf(stderr, "usage: clock_job DIR\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("pid %d\n", (int)getpid());
  report("start");
  if (wait_for(argv[1], "away") != 0)
    return 3;
  report("away");
  if (wait_for(argv[1], "back") != 0)
    return 3;
  report("back");
  return 0;
}
