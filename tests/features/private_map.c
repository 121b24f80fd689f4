/* private_map: a MAP_PRIVATE read-write mapping of a file, modified at every
 * step (copy-on-write pages that must be saved) while most pages stay clean
 * (they may be mapped from the file again); a read-only private mapping of
 * the same file; a page made read-only with mprotect after it was modified.
 * At the end: modified pages hold what was written, clean pages what the
 * file holds, the file itself is unchanged, and /proc/self/maps shows the
 * same protections; then MADV_DONTNEED drops the modified pages, which must
 * show the file's bytes again (not the bytes saved in an image), or zeros where
 * a migration restored the mapping as anonymous memory (no file there).
 *
 * usage: private_map DIR [STEPS]   (default 30 steps)
 */
#include "feature.h"

#include <fcntl.h>
#include <sys/mman.h>

enum { PAGE = 4096, PAGES = 256, STEP_MS = 100 };

static uint64_t file_word(size_t i) { return mix64(0xf11e0000 + i); }

/* 1 if /proc/self/maps names a file ending in `suffix` for the mapping at `addr`. */
static int maps_names(const void *addr, const char *suffix)
{
  FILE *f = fopen("/proc/self/maps", "r");
  CHECK(f != NULL, "open /proc/self/maps: %s", strerror(errno));
  char line[4096 + 128];
  int found = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long a, b;
    if (sscanf(line, "%lx-%lx", &a, &b) != 2 || (uintptr_t)addr < a || (uintptr_t)addr >= b)
      continue;
    line[strcspn(line, "\n")] = 0;
    size_t n = strlen(line), k = strlen(suffix);
    found = n >= k && strcmp(line + n - k, suffix) == 0;
    break;
  }
  fclose(f);
  return found;
}

int main(int argc, char **argv)
{
  CHECK(argc >= 2, "usage: private_map DIR [STEPS]");
  int steps = argc > 2 ? parse_int(argv[2]) : 30;
  char path[4096];
  snprintf(path, sizeof path, "%s/map.bin", argv[1]);
  const size_t len = PAGES * PAGE, words = len / 8;

  uint64_t *content = malloc(len);
  for (size_t i = 0; i < words; i++)
    content[i] = file_word(i);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0, "create %s: %s", path, strerror(errno));
  write_all(fd, content, len);

  uint64_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const uint64_t *ro = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
  CHECK(p != MAP_FAILED && ro != MAP_FAILED, "mmap: %s", strerror(errno));
  CHECK_SYS(close(fd));  /* the mappings keep the file */

  unsigned char modified[PAGES] = { 0 };
  uint64_t *model = malloc(len);
  memcpy(model, content, len);
  const size_t protected_page = 200;

  printf("private_map: %d steps\n", steps);
  for (int s = 1; s <= steps; s++) {
    size_t page = (size_t)(mix64((uint64_t)s) % 128);  /* pages 0..127 may be modified */
    for (size_t w = 0; w < PAGE / 8; w += 3) {
      model[page * PAGE / 8 + w] = mix64(((uint64_t)s << 32) + w);
      p[page * PAGE / 8 + w] = model[page * PAGE / 8 + w];
    }
    modified[page] = 1;
    if (s == 5) {  /* a modified page made read-only */
      p[protected_page * PAGE / 8] = model[protected_page * PAGE / 8] = 0x5555aaaa5555aaaaULL;
      modified[protected_page] = 1;
      CHECK_SYS(mprotect((char *)p + protected_page * PAGE, PAGE, PROT_READ));
    }
    size_t clean = 128 + (size_t)s % 64;  /* pages 128..191 are only read */
    for (size_t w = 0; w < PAGE / 8; w++)
      CHECK(p[clean * PAGE / 8 + w] == content[clean * PAGE / 8 + w], "step %d: clean page %zu differs", s, clean);
    feature_step(s);
    sleep_ms(STEP_MS);
  }

  size_t nmod = 0;
  for (size_t i = 0; i < words; i++) {
    CHECK(p[i] == model[i], "private page %zu word %zu: %016llx, want %016llx", i / 512, i % 512,
          (unsigned long long)p[i], (unsigned long long)model[i]);
    CHECK(ro[i] == content[i], "read-only mapping page %zu differs from the file", i / 512);
  }
  for (size_t i = 0; i < PAGES; i++)
    nmod += modified[i];
  fd = open(path, O_RDONLY);
  CHECK(fd >= 0, "reopen %s: %s", path, strerror(errno));
  uint64_t *back = malloc(len);
  read_exact(fd, back, len);
  CHECK(memcmp(back, content, len) == 0, "the file changed under its private mapping");
  close(fd);

  printf("modified pages %zu\n", nmod);
  printf("private fnv %016llx\n", (unsigned long long)fnv1a(FNV_INIT, p, len));
  printf("file unchanged\n");
  print_map_perms("private", p, len);
  print_map_perms("readonly", ro, len);
  /* A migration to a host without the file restores the mapping as anonymous memory
   * (docs/kinds/memory.md): dropped pages then read as zeros, never as saved bytes. */
  const int of_file = maps_names(p, "/map.bin");
  CHECK_SYS(madvise(p, len, MADV_DONTNEED));
  for (size_t i = 0; i < words; i++) {
    uint64_t want = of_file ? content[i] : 0;
    CHECK(p[i] == want, "private page %zu word %zu after MADV_DONTNEED: %016llx, want %016llx (%s)", i / 512,
          i % 512, (unsigned long long)p[i], (unsigned long long)want, of_file ? "the file's" : "anonymous");
  }
  printf("dropped pages show the file\n");
  printf("PASS\n");
  return 0;
}
