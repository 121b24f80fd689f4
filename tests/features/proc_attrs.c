/* proc_attrs: per-process attributes that must come back as they were: the
 * current directory (changed to DIR/work at the start), the umask (027),
 * rlimits (RLIMIT_NOFILE soft 200, RLIMIT_CORE 0), an fd at 250 opened before the
 * limit was lowered (a restart must place it before it sets the limit), an environment variable
 * set with setenv, the arguments and environment as the kernel shows them
 * (/proc/self/cmdline and /proc/self/environ, compared with what they were
 * at the start), a relative path opened through the cwd, and thread names (the
 * main thread's set with prctl, a helper's with pthread_setname_np: what ps,
 * top and pgrep show).
 *
 * usage: proc_attrs DIR [STEPS]   (default 30 steps of 100 ms)
 */
#include "feature.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

enum { STEP_MS = 100, HIGH_FD = 250 };

static volatile int helper_done;
static char helper_name[16];

/* Waits for the end, then reads its own name (its TID here may not be the one
 * pthread_getname_np would look up from another thread). */
static void *helper(void *arg)
{
  (void)arg;
  while (!helper_done)
    sleep_ms(20);
  CHECK_SYS(prctl(PR_GET_NAME, helper_name));
  return NULL;
}

static char *slurp(const char *path, size_t *len)
{
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  ssize_t r;
  while ((r = read(fd, buf + n, cap - n)) > 0) {
    n += (size_t)r;
    if (n == cap)
      buf = realloc(buf, cap *= 2);
  }
  CHECK(r == 0, "read %s: %s", path, strerror(errno));
  close(fd);
  *len = n;
  return buf;
}

int main(int argc, char **argv)
{
  CHECK(argc >= 2, "usage: proc_attrs DIR [STEPS]");
  int steps = argc > 2 ? parse_int(argv[2]) : 30;
  char work[4096], cwd[4096];
  snprintf(work, sizeof work, "%s/work", argv[1]);
  CHECK_SYS(mkdir(work, 0755));
  CHECK_SYS(chdir(work));
  CHECK(getcwd(work, sizeof work) != NULL, "getcwd: %s", strerror(errno));  /* canonical form */
  umask(027);
  struct rlimit nofile, core = { 0, 0 };
  CHECK_SYS(getrlimit(RLIMIT_NOFILE, &nofile));
  CHECK(nofile.rlim_cur > HIGH_FD, "RLIMIT_NOFILE is %llu: this program needs more than %d",
        (unsigned long long)nofile.rlim_cur, HIGH_FD);
  int low = open("held-high", O_RDWR | O_CREAT | O_EXCL, 0666);
  CHECK(low >= 0, "create held-high: %s", strerror(errno));
  CHECK(write(low, "high", 4) == 4, "write held-high: %s", strerror(errno));
  int high = fcntl(low, F_DUPFD, HIGH_FD);
  CHECK(high == HIGH_FD, "F_DUPFD %d gave %d: %s", HIGH_FD, high, strerror(errno));
  close(low);
  struct stat held;
  CHECK_SYS(fstat(high, &held));
  nofile.rlim_cur = 200;
  CHECK_SYS(setrlimit(RLIMIT_NOFILE, &nofile));
  CHECK_SYS(setrlimit(RLIMIT_CORE, &core));
  CHECK_SYS(setenv("MIG_FEATURE_VAR", "value-with spaces=and equals", 1));
  size_t cmdline_len, environ_len;
  char *cmdline = slurp("/proc/self/cmdline", &cmdline_len);
  char *environ0 = slurp("/proc/self/environ", &environ_len);
  size_t args_len = 0;
  for (int i = 0; i < argc; i++)
    args_len += strlen(argv[i]) + 1;
  CHECK(cmdline_len == args_len, "/proc/self/cmdline has %zu bytes, argv %zu", cmdline_len, args_len);
  int fd = open("made-here", O_WRONLY | O_CREAT | O_EXCL, 0666);
  CHECK(fd >= 0, "create made-here: %s", strerror(errno));
  close(fd);

  CHECK_SYS(prctl(PR_SET_NAME, "attrs-main"));
  pthread_t h;
  CHECK(pthread_create(&h, NULL, helper, NULL) == 0, "pthread_create failed");
  CHECK(pthread_setname_np(h, "attrs-helper") == 0, "pthread_setname_np failed");

  printf("proc_attrs: %d steps\n", steps);
  for (int s = 1; s <= steps; s++) {
    CHECK(getcwd(cwd, sizeof cwd) != NULL && strcmp(cwd, work) == 0, "step %d: cwd changed", s);
    feature_step(s);
    sleep_ms(STEP_MS);
  }

  CHECK(getcwd(cwd, sizeof cwd) != NULL && strcmp(cwd, work) == 0, "cwd is '%s', want '%s'", cwd, work);
  CHECK(access("made-here", F_OK) == 0, "relative path no longer found through the cwd");
  char name[64];
  snprintf(name, sizeof name, "made-after-%d", steps);
  fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0666);
  CHECK(fd >= 0, "create %s: %s", name, strerror(errno));
  struct stat st;
  CHECK_SYS(fstat(fd, &st));
  close(fd);
  CHECK((st.st_mode & 0777) == 0640, "new file has mode %o: umask not 027", st.st_mode & 0777);
  mode_t old = umask(027);
  CHECK(old == 027, "umask is %o", old);
  struct rlimit r;
  CHECK_SYS(getrlimit(RLIMIT_NOFILE, &r));
  CHECK(r.rlim_cur == 200 && r.rlim_max == nofile.rlim_max, "RLIMIT_NOFILE is %llu/%llu",
        (unsigned long long)r.rlim_cur, (unsigned long long)r.rlim_max);
  struct stat now_held;
  CHECK(fstat(HIGH_FD, &now_held) == 0, "fd %d (above the limit) is gone: %s", HIGH_FD, strerror(errno));
  CHECK(now_held.st_ino == held.st_ino && now_held.st_dev == held.st_dev, "fd %d is another file", HIGH_FD);
  char four[4];
  CHECK(pread(HIGH_FD, four, 4, 0) == 4 && memcmp(four, "high", 4) == 0, "fd %d does not read back", HIGH_FD);
  CHECK(lseek(HIGH_FD, 0, SEEK_CUR) == 4, "fd %d lost its offset", HIGH_FD);
  CHECK_SYS(getrlimit(RLIMIT_CORE, &r));
  CHECK(r.rlim_cur == 0 && r.rlim_max == 0, "RLIMIT_CORE changed");
  const char *v = getenv("MIG_FEATURE_VAR");
  CHECK(v && strcmp(v, "value-with spaces=and equals") == 0, "MIG_FEATURE_VAR is '%s'", v ? v : "(unset)");
  size_t len;
  char *now = slurp("/proc/self/cmdline", &len);
  CHECK(len == cmdline_len && memcmp(now, cmdline, len) == 0, "/proc/self/cmdline changed");
  now = slurp("/proc/self/environ", &len);
  CHECK(len == environ_len && memcmp(now, environ0, len) == 0, "/proc/self/environ changed");
  for (int i = 0; i < argc; i++)
    CHECK(strlen(argv[i]) < 4096, "argv[%d] looks corrupt", i);

  char main_name[16];
  CHECK_SYS(prctl(PR_GET_NAME, main_name));
  CHECK(strcmp(main_name, "attrs-main") == 0, "the main thread is named '%s', not attrs-main", main_name);
  helper_done = 1;
  CHECK(pthread_join(h, NULL) == 0, "pthread_join failed");
  CHECK(strcmp(helper_name, "attrs-helper") == 0, "the helper thread is named '%s', not attrs-helper", helper_name);

  printf("cwd unchanged\numask 027\nrlimits unchanged\nfd %d above the fd limit kept\n", HIGH_FD);
  printf("environment unchanged\nthread names unchanged\n");
  printf("cmdline unchanged\n");
  printf("PASS\n");
  return 0;
}
