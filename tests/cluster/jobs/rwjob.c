/* rwjob: a job whose files stay at its home host while it runs on another one.
 * Every I/O path a program uses on a home file must reach home after a
 * migration, in order, with nothing lost or repeated:
 * - stdout (redirected by the caller to a file at home) is written with
 *   printf, i.e. glibc's internal write, flushed after each step;
 * - DIR/input.txt (made by the caller: one line per step) is read with fgets
 *   through a 64-byte stdio buffer (so the kernel offset runs ahead of what
 *   the program consumed and reads continue all run long); every 4th step
 *   the program remembers its place with ftell, fseek's back to the start,
 *   re-reads the first line and fseek's back to where it was;
 * - DIR/append.log, opened O_APPEND before the first step, gets one line per
 *   step through a raw syscall(SYS_write, ...), which no interposition sees;
 * - DIR/late.txt is opened (O_APPEND), written and closed at every step, so it
 *   is also opened after the migration, under a home path.
 * "pid P ppid Q" goes to stderr at the start and at the end, so that the
 * caller can check that both stayed what they were at home. stdout carries no
 * PIDs: it is compared byte for byte with a run without mig.
 *
 * usage: rwjob DIR STEPS     (steps of 100 ms; exits 0 after "PASS")
 */
#include "feature.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

enum { STEP_MS = 100, LINE_LEN = 256 };

static char path_buf[4096];
static const char *path(const char *dir, const char *name)
{
  snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
  return path_buf;
}

int main(int argc, char **argv)
{
  CHECK(argc == 3, "usage: rwjob DIR STEPS");
  const char *dir = argv[1];
  int steps = parse_int(argv[2]);
  char line[LINE_LEN], first[LINE_LEN];

  fprintf(stderr, "pid %d ppid %d\n", (int)getpid(), (int)getppid());

  static char inbuf[64];
  FILE *in = fopen(path(dir, "input.txt"), "r");
  CHECK(in != NULL, "open %s: %s", path_buf, strerror(errno));
  CHECK(setvbuf(in, inbuf, _IOFBF, sizeof inbuf) == 0, "setvbuf");
  int app = open(path(dir, "append.log"), O_WRONLY | O_CREAT | O_APPEND, 0644);
  CHECK(app >= 0, "open %s: %s", path_buf, strerror(errno));
  first[0] = '\0';

  printf("rwjob: %d steps\n", steps);
  for (int s = 1; s <= steps; s++) {
    CHECK(fgets(line, sizeof line, in) != NULL, "step %d: fgets: %s", s, feof(in) ? "EOF" : strerror(errno));
    if (s == 1)
      memcpy(first, line, sizeof first);
    printf("step %d read: %s", s, line);

    if (s % 4 == 0) {
      long pos = ftell(in);
      CHECK(pos > 0, "step %d: ftell: %s", s, strerror(errno));
      CHECK(fseek(in, 0, SEEK_SET) == 0, "step %d: fseek to 0: %s", s, strerror(errno));
      char again[LINE_LEN];
      CHECK(fgets(again, sizeof again, in) != NULL, "step %d: fgets after fseek", s);
      CHECK(strcmp(again, first) == 0, "step %d: first line reads '%s', was '%s'", s, again, first);
      CHECK(fseek(in, pos, SEEK_SET) == 0, "step %d: fseek back to %ld: %s", s, pos, strerror(errno));
      CHECK(ftell(in) == pos, "step %d: ftell %ld after fseek to %ld", s, ftell(in), pos);
      printf("step %d rewound from offset %ld and back\n", s, pos);
    }

    char msg[64];
    int n = snprintf(msg, sizeof msg, "append %d\n", s);
    long w = syscall(SYS_write, app, msg, (size_t)n);
    CHECK(w == n, "step %d: syscall(SYS_write) returned %ld: %s", s, w, w < 0 ? strerror(errno) : "short");

    int late = open(path(dir, "late.txt"), O_WRONLY | O_CREAT | O_APPEND, 0644);
    CHECK(late >= 0, "step %d: open %s: %s", s, path_buf, strerror(errno));
    n = snprintf(msg, sizeof msg, "late %d\n", s);
    write_all(late, msg, (size_t)n);
    CHECK_SYS(close(late));

    feature_step(s);
    sleep_ms(STEP_MS);
  }
  CHECK(fgets(line, sizeof line, in) == NULL && feof(in), "input.txt has more lines than steps");
  CHECK(fclose(in) == 0, "fclose input.txt: %s", strerror(errno));
  CHECK_SYS(close(app));

  struct stat st;
  CHECK(stat(path(dir, "append.log"), &st) == 0, "stat %s: %s", path_buf, strerror(errno));
  printf("append.log size %ld\n", (long)st.st_size);
  CHECK(stat(path(dir, "late.txt"), &st) == 0, "stat %s: %s", path_buf, strerror(errno));
  printf("late.txt size %ld\n", (long)st.st_size);
  printf("PASS\n");
  fflush(stdout);
  fprintf(stderr, "pid %d ppid %d\n", (int)getpid(), (int)getppid());
  return 0;
}
