/* fd_numbers: the program takes fd numbers with dup2/dup3 wherever it likes, as a
 * daemon or a shell does, while a thread of it works through a file all the while.
 * Its soft fd limit is set to 256 (mig keeps its own fds in the 64 numbers under the
 * limit, and after a move, its relay connections among them). Each step the main thread
 * - dup2s /dev/null onto every number from 3 to limit-65 it does not hold, all at
 *   once, then closes them with close_range;
 * - dup3s (O_CLOEXEC) /dev/null onto each of the top 64 numbers, all at once (mig's
 *   fds there must go elsewhere), writes through each, then closes each (a close of
 *   one of mig's would be a no-op, a close of the program's must succeed);
 * - dup2s data.txt onto limit-1 and onto every number /proc/self/fd lists that was
 *   not open at the start and is not the program's (mig's fds, wherever they went),
 *   writes the step's record through each with pwrite (a call forwarded home after a
 *   move), and closes it;
 * while the worker thread pwrites and preads words of work.bin every 2 ms (calls
 * forwarded after a move, so its relay connection is often in use while the main
 * thread takes its number), checking each word read back. A dup2 that failed (before
 * issue 15: EBADF onto a relay connection) fails the program. At the end: data.txt's
 * records and work.bin's words are checked; the output has no counts (they depend on
 * speed).
 *
 * usage: fd_numbers DIR [STEPS]   (DIR: an empty directory; default 12 steps)
 */
#include "feature.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

enum { STEP_MS = 100, LIMIT = 256, BAND = 64, RECORD = 32, WORDS = 512 };

static char path_buf[4096];
static const char *path(const char *dir, const char *name)
{
  snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
  return path_buf;
}

static unsigned char open_at_start[LIMIT];
static atomic_int stop_worker;
static int work_fd;
static uint64_t work_words[WORDS];

static void *worker(void *unused)
{
  (void)unused;
  struct timespec pause = { 0, 2 * 1000 * 1000 };  /* busy, not a load on the machine */
  for (uint64_t i = 1; !atomic_load(&stop_worker); i++) {
    const uint64_t v = mix64(i);
    const off_t at = (off_t)(i % WORDS) * 8;
    CHECK(pwrite(work_fd, &v, 8, at) == 8, "worker: pwrite: %s", strerror(errno));
    uint64_t back = 0;
    CHECK(pread(work_fd, &back, 8, at) == 8, "worker: pread: %s", strerror(errno));
    CHECK(back == v, "worker: word %llu reads %016llx, wrote %016llx", (unsigned long long)(i % WORDS),
          (unsigned long long)back, (unsigned long long)v);
    work_words[i % WORDS] = v;
    nanosleep(&pause, NULL);
  }
  return NULL;
}

static void make_record(char *rec, int step)
{
  memset(rec, '.', RECORD);
  int n = snprintf(rec, RECORD, "step %02d %016llx", step, (unsigned long long)mix64((uint64_t)step));
  rec[n] = ' ';
  rec[RECORD - 1] = '\n';
}

/* dup2 from onto to, which must give to. */
static void take(int from, int to, int flags, const char *what)
{
  int r = flags != 0 ? dup3(from, to, flags) : dup2(from, to);
  CHECK(r == to, "%s onto %d: %s", what, to, r < 0 ? strerror(errno) : "another number");
}

int main(int argc, char **argv)
{
  CHECK(argc >= 2, "usage: fd_numbers DIR [STEPS]");
  const char *dir = argv[1];
  int steps = argc > 2 ? parse_int(argv[2]) : 12;

  struct rlimit lim;
  CHECK_SYS(getrlimit(RLIMIT_NOFILE, &lim));
  CHECK(lim.rlim_max >= LIMIT, "hard fd limit %llu under %d", (unsigned long long)lim.rlim_max, LIMIT);
  lim.rlim_cur = LIMIT;
  CHECK_SYS(setrlimit(RLIMIT_NOFILE, &lim));
  for (int fd = 0; fd < LIMIT; fd++)
    open_at_start[fd] = fcntl(fd, F_GETFD) >= 0;

  int null = open("/dev/null", O_RDWR);
  int data = open(path(dir, "data.txt"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  work_fd = open(path(dir, "work.bin"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  CHECK(null >= 0 && data >= 0 && work_fd >= 0, "open: %s", strerror(errno));
  CHECK_SYS(ftruncate(work_fd, WORDS * 8));
  const int mine[] = { null, data, work_fd };
  pthread_t t;
  CHECK(pthread_create(&t, NULL, worker, NULL) == 0, "pthread_create");

  printf("fd_numbers: %d steps, limit %d\n", steps, LIMIT);
  for (int s = 1; s <= steps; s++) {
    int low = 0;
    for (int fd = 3; fd < LIMIT - BAND; fd++) {
      if (open_at_start[fd] || fd == null || fd == data || fd == work_fd)
        continue;
      take(null, fd, 0, "dup2 /dev/null");
      if (low == 0)
        low = fd;
    }
    CHECK(low == 0 || close_range((unsigned)low, LIMIT - BAND - 1, 0) == 0, "close_range: %s", strerror(errno));

    for (int fd = LIMIT - BAND; fd < LIMIT; fd++) {
      if (open_at_start[fd])
        continue;
      take(null, fd, O_CLOEXEC, "dup3 /dev/null");
      CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC, "fd %d lost O_CLOEXEC", fd);
    }
    for (int fd = LIMIT - BAND; fd < LIMIT; fd++)
      CHECK(open_at_start[fd] || write(fd, "x", 1) == 1, "write to /dev/null as fd %d: %s", fd, strerror(errno));
    for (int fd = LIMIT - BAND; fd < LIMIT; fd++)
      CHECK(open_at_start[fd] || close(fd) == 0, "close %d: %s", fd, strerror(errno));

    /* The numbers the program sees but did not open: mig's, wherever they are now. */
    int seen[LIMIT], n = 0;
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL, "opendir /proc/self/fd: %s", strerror(errno));
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
      int fd = atoi(e->d_name);
      if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(d) || fd >= LIMIT - 1 || open_at_start[fd])
        continue;
      int ours = 0;
      for (size_t k = 0; k < sizeof mine / sizeof mine[0]; k++)
        ours |= fd == mine[k];
      if (!ours)
        seen[n++] = fd;
    }
    closedir(d);
    seen[n++] = LIMIT - 1;
    char rec[RECORD];
    make_record(rec, s);
    for (int k = 0; k < n; k++) {
      take(data, seen[k], 0, "dup2 data.txt");
      CHECK(pwrite(seen[k], rec, RECORD, (off_t)(s - 1) * RECORD) == RECORD, "pwrite through fd %d: %s", seen[k],
            strerror(errno));
      CHECK(close(seen[k]) == 0, "close %d: %s", seen[k], strerror(errno));
    }
    feature_step(s);
    sleep_ms(STEP_MS);
  }
  atomic_store(&stop_worker, 1);
  CHECK(pthread_join(t, NULL) == 0, "pthread_join");

  char rec[RECORD], got[RECORD];
  for (int s = 1; s <= steps; s++) {
    make_record(rec, s);
    CHECK(pread(data, got, RECORD, (off_t)(s - 1) * RECORD) == RECORD && memcmp(got, rec, RECORD) == 0,
          "data.txt record %d is not the step's", s);
  }
  struct stat st;
  CHECK_SYS(fstat(data, &st));
  CHECK(st.st_size == (off_t)steps * RECORD, "data.txt has %lld bytes", (long long)st.st_size);
  for (int w = 0; w < WORDS; w++) {
    uint64_t v = 0;
    CHECK(pread(work_fd, &v, 8, (off_t)w * 8) == 8 && v == work_words[w], "work.bin word %d", w);
  }
  close(null), close(data), close(work_fd);
  printf("data.txt %d records, work.bin %d words: as written\n", steps, WORDS);
  printf("PASS\n");
  return 0;
}
