/* files: regular files in use across a checkpoint.
 * - input.txt is read line by line with fgets through a 64-byte stdio
 *   buffer, so the kernel offset runs ahead of what the program consumed and
 *   the reads continue over the whole run;
 * - output.txt is written with write() through three descriptors that share
 *   one offset (open, dup, and F_DUPFD_CLOEXEC to fd >= 20);
 * - log.txt is opened O_APPEND, rw.bin O_RDWR (pwrite/pread, no offset),
 *   and /dev/null is open for writing.
 * At the end: offsets, access modes, O_APPEND, FD_CLOEXEC and the contents
 * of every file are checked.
 *
 * usage: files DIR [STEPS]   (DIR: an empty directory; default 30 steps)
 */
#include "feature.h"

#include <fcntl.h>
#include <sys/stat.h>

enum { STEP_MS = 100, LINE_MAX_LEN = 80 };

static char path_buf[4096];
static const char *path(const char *dir, const char *name)
{
  snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
  return path_buf;
}

static void make_line(char *buf, size_t n, int i)
{
  uint64_t r = mix64((uint64_t)i);
  snprintf(buf, n, "line %03d: %016llx %.*s\n", i, (unsigned long long)r, (int)(r % 30),
           "abcdefghijklmnopqrstuvwxyz0123456789");
}

static uint64_t file_sum(const char *p, off_t *size)
{
  int fd = open(p, O_RDONLY);
  CHECK(fd >= 0, "open %s: %s", p, strerror(errno));
  char buf[4096];
  uint64_t h = FNV_INIT;
  ssize_t r;
  *size = 0;
  while ((r = read(fd, buf, sizeof buf)) > 0) {
    h = fnv1a(h, buf, (size_t)r);
    *size += r;
  }
  CHECK(r == 0, "read %s: %s", p, strerror(errno));
  close(fd);
  return h;
}

int main(int argc, char **argv)
{
  CHECK(argc >= 2, "usage: files DIR [STEPS]");
  const char *dir = argv[1];
  int steps = argc > 2 ? parse_int(argv[2]) : 30;
  char line[LINE_MAX_LEN], want[LINE_MAX_LEN];

  FILE *w = fopen(path(dir, "input.txt"), "w");
  CHECK(w != NULL, "create input.txt: %s", strerror(errno));
  for (int i = 1; i <= steps; i++) {
    make_line(want, sizeof want, i);
    fputs(want, w);
  }
  CHECK(fclose(w) == 0, "fclose input.txt");

  static char inbuf[64];
  FILE *in = fopen(path(dir, "input.txt"), "r");
  CHECK(in != NULL, "open input.txt: %s", strerror(errno));
  CHECK(setvbuf(in, inbuf, _IOFBF, sizeof inbuf) == 0, "setvbuf");
  int out = open(path(dir, "output.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(out >= 0, "open output.txt: %s", strerror(errno));
  int out2 = dup(out);
  int out3 = fcntl(out, F_DUPFD_CLOEXEC, 20);
  CHECK(out2 >= 0 && out3 >= 20, "dup: %s", strerror(errno));
  int logfd = open(path(dir, "log.txt"), O_WRONLY | O_CREAT | O_APPEND, 0600);
  int rw = open(path(dir, "rw.bin"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  int null = open("/dev/null", O_WRONLY);
  CHECK(logfd >= 0 && rw >= 0 && null >= 0, "open: %s", strerror(errno));
  write_all(logfd, "log start\n", 10);
  const int fds[] = { out, out2, out3 };

  printf("files: %d steps\n", steps);
  off_t written = 0, consumed = 0;
  for (int s = 1; s <= steps; s++) {
    CHECK(fgets(line, sizeof line, in) != NULL, "step %d: fgets: %s", s, feof(in) ? "EOF" : strerror(errno));
    make_line(want, sizeof want, s);
    CHECK(strcmp(line, want) == 0, "step %d: read '%s', want '%s'", s, line, want);
    consumed += (off_t)strlen(line);
    CHECK(ftell(in) == consumed, "step %d: ftell %ld, want %ld", s, ftell(in), (long)consumed);

    for (char *c = line; *c; c++)
      if (*c >= 'a' && *c <= 'z')
        *c = (char)(*c - 'a' + 'A');
    write_all(fds[s % 3], line, strlen(line));
    written += (off_t)strlen(line);
    for (int k = 0; k < 3; k++)
      CHECK(lseek(fds[k], 0, SEEK_CUR) == written, "step %d: offset of fd %d is %ld, want %ld", s, fds[k],
            (long)lseek(fds[k], 0, SEEK_CUR), (long)written);

    char msg[32];
    int n = snprintf(msg, sizeof msg, "step %d\n", s);
    CHECK(lseek(logfd, 0, SEEK_SET) == 0, "lseek log");  /* O_APPEND must still append */
    write_all(logfd, msg, (size_t)n);
    uint64_t v = mix64((uint64_t)s);
    CHECK(pwrite(rw, &v, sizeof v, (off_t)(s * 4096)) == sizeof v, "pwrite: %s", strerror(errno));
    write_all(null, line, strlen(line));
    feature_step(s);
    sleep_ms(STEP_MS);
  }
  CHECK(fgets(line, sizeof line, in) == NULL && feof(in), "input has more lines than steps");

  CHECK((fcntl(out, F_GETFL) & O_ACCMODE) == O_WRONLY && !(fcntl(out, F_GETFL) & O_APPEND), "output.txt flags");
  CHECK(fcntl(out, F_GETFD) == 0 && fcntl(out2, F_GETFD) == 0, "FD_CLOEXEC set on output.txt");
  CHECK(fcntl(out3, F_GETFD) == FD_CLOEXEC, "FD_CLOEXEC lost on fd %d", out3);
  CHECK((fcntl(logfd, F_GETFL) & (O_APPEND | O_ACCMODE)) == (O_APPEND | O_WRONLY), "log.txt flags: %#x",
        fcntl(logfd, F_GETFL));
  CHECK((fcntl(rw, F_GETFL) & O_ACCMODE) == O_RDWR, "rw.bin is not O_RDWR");
  CHECK(lseek(rw, 0, SEEK_CUR) == 0, "rw.bin offset moved");
  for (int s = 1; s <= steps; s++) {
    uint64_t v;
    CHECK(pread(rw, &v, sizeof v, (off_t)(s * 4096)) == sizeof v && v == mix64((uint64_t)s), "rw.bin word %d", s);
  }
  struct stat st;
  CHECK_SYS(fstat(null, &st));
  CHECK(S_ISCHR(st.st_mode), "/dev/null is no longer a character device");
  fclose(in);
  close(out), close(out2), close(out3), close(logfd), close(rw), close(null);

  const char *names[] = { "input.txt", "output.txt", "log.txt", "rw.bin" };
  for (int i = 0; i < 4; i++) {
    off_t size;
    uint64_t h = file_sum(path(dir, names[i]), &size);
    printf("%s size %ld fnv %016llx\n", names[i], (long)size, (unsigned long long)h);
  }
  printf("PASS\n");
  return 0;
}
