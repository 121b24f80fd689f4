/* unlinked: files deleted while open. gone.bin (read-write, 1 MiB, written
 * with a pattern, then unlinked) is modified with pwrite and grown with
 * write at every step; gone.txt (read-only, 32 lines) is unlinked too and
 * read one line per step through its offset. At the end both are still open,
 * still deleted (st_nlink 0, /proc/self/fd says "(deleted)", the name does
 * not exist) and hold exactly what was written.
 *
 * usage: unlinked DIR [STEPS]   (default 30 steps)
 */
#include "feature.h"

#include <fcntl.h>
#include <sys/stat.h>

enum { PAGE = 4096, PAGES = 256, STEP_MS = 100, TEXT_LINE = 32 };

static char *model;   /* what gone.bin must contain */
static size_t model_size;

static void fill(char *p, size_t n, uint64_t seed)
{
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = mix64(seed + i);
    memcpy(p + i, &v, n - i < 8 ? n - i : 8);
  }
}

static void check_deleted(int fd, const char *path, const char *what)
{
  struct stat st;
  char link[64], target[4096];
  CHECK_SYS(fstat(fd, &st));
  CHECK(st.st_nlink == 0, "%s: st_nlink is %ld", what, (long)st.st_nlink);
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  CHECK(n > 0, "readlink %s: %s", link, strerror(errno));
  target[n] = '\0';
  CHECK(n > 10 && strcmp(target + n - 10, " (deleted)") == 0, "%s: /proc/self/fd says '%s'", what, target);
  CHECK(access(path, F_OK) != 0 && errno == ENOENT, "%s: the name exists again", what);
}

int main(int argc, char **argv)
{
  CHECK(argc >= 2, "usage: unlinked DIR [STEPS]");
  int steps = argc > 2 ? parse_int(argv[2]) : 30;
  char bin[4096], txt[4096], line[TEXT_LINE + 1];
  snprintf(bin, sizeof bin, "%s/gone.bin", argv[1]);
  snprintf(txt, sizeof txt, "%s/gone.txt", argv[1]);

  model_size = PAGES * PAGE;
  model = malloc(model_size + (size_t)steps * 100);
  fill(model, model_size, 1);
  int fd = open(bin, O_RDWR | O_CREAT | O_EXCL, 0600);
  CHECK(fd >= 0, "create %s: %s", bin, strerror(errno));
  write_all(fd, model, model_size);
  CHECK_SYS(unlink(bin));

  int tfd = open(txt, O_WRONLY | O_CREAT | O_EXCL, 0600);
  CHECK(tfd >= 0, "create %s: %s", txt, strerror(errno));
  for (int i = 1; i <= steps; i++) {
    snprintf(line, sizeof line, "%-30d|\n", i * 7);
    write_all(tfd, line, TEXT_LINE);
  }
  close(tfd);
  tfd = open(txt, O_RDONLY);
  CHECK(tfd >= 0, "open %s: %s", txt, strerror(errno));
  CHECK_SYS(unlink(txt));
  check_deleted(fd, bin, "gone.bin");
  check_deleted(tfd, txt, "gone.txt");

  printf("unlinked: %d steps\n", steps);
  for (int s = 1; s <= steps; s++) {
    char buf[PAGE], want[TEXT_LINE + 1];
    size_t page = (size_t)(mix64((uint64_t)s) % PAGES);
    fill(buf, PAGE, 1000 + (uint64_t)s);
    CHECK(pwrite(fd, buf, PAGE, (off_t)(page * PAGE)) == PAGE, "pwrite: %s", strerror(errno));
    memcpy(model + page * PAGE, buf, PAGE);
    fill(buf, 100, 5000 + (uint64_t)s);           /* grow it through the offset */
    write_all(fd, buf, 100);
    memcpy(model + model_size, buf, 100);
    model_size += 100;

    read_exact(tfd, line, TEXT_LINE);
    snprintf(want, sizeof want, "%-30d|\n", s * 7);
    CHECK(memcmp(line, want, TEXT_LINE) == 0, "step %d: gone.txt line '%.*s'", s, TEXT_LINE - 1, line);
    feature_step(s);
    sleep_ms(STEP_MS);
  }

  check_deleted(fd, bin, "gone.bin");
  check_deleted(tfd, txt, "gone.txt");
  CHECK(read(tfd, line, 1) == 0, "gone.txt: data after the last line");
  CHECK(lseek(fd, 0, SEEK_CUR) == (off_t)model_size, "gone.bin offset %ld, want %zu",
        (long)lseek(fd, 0, SEEK_CUR), model_size);
  CHECK((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR, "gone.bin is not O_RDWR");
  CHECK((fcntl(tfd, F_GETFL) & O_ACCMODE) == O_RDONLY, "gone.txt is not O_RDONLY");
  struct stat st;
  CHECK_SYS(fstat(fd, &st));
  CHECK((size_t)st.st_size == model_size, "gone.bin size %ld, want %zu", (long)st.st_size, model_size);
  CHECK((st.st_mode & 07777) == 0600, "gone.bin mode %o", st.st_mode & 07777);
  char *back = malloc(model_size);
  CHECK(pread(fd, back, model_size, 0) == (ssize_t)model_size, "pread: %s", strerror(errno));
  for (size_t i = 0; i < model_size; i++)
    CHECK(back[i] == model[i], "gone.bin byte %zu differs", i);
  printf("gone.bin size %zu fnv %016llx\n", model_size, (unsigned long long)fnv1a(FNV_INIT, back, model_size));
  printf("gone.txt read %d lines\n", steps);
  printf("still deleted\n");
  printf("PASS\n");
  return 0;
}
