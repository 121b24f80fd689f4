/* lazy_syscalls: system calls whose buffers are pages a lazy restart
 * (migctl restart --lazy) has not put in place yet: write() from one, read()
 * into one, a blocking recv() into one, and a forked child reading its copy of
 * them; then MADV_DONTNEED on missing pages (they must read zero, not the saved
 * data) and mremap of missing pages (they keep their contents at the new place;
 * one of them is zero, so left out of the image: the moved range is never one
 * piece of the image). Checkpointed at STEP 1; after STEP 3 it checks. The same
 * output with or without mig; where the pages are ("lazy: pages at ADDR") and how
 * many were still missing go to stderr ("lazy: N of 4 target pages missing",
 * "lazy: M of 80 moved or dropped pages missing"), for
 * tests/features/lazy_restart_test.sh.
 *
 * usage: lazy_syscalls [MIB]   (default 256)
 */
#define _GNU_SOURCE /* mremap */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { PAGE = 4096, WORDS = PAGE / 8 };
/* MADV_DONTNEED on 16 pages, mremap of 64 others (HOLE among them zero) to a new place */
enum { DROP = 1000, NDROP = 16, MOVE = 2000, NMOVE = 64, HOLE = MOVE + NMOVE / 2 };

static uint64_t word(size_t page, size_t i) { return 0x4c415a5900000000ULL | ((uint64_t)page << 9) | i; }

static int page_exact(const unsigned char* p, size_t page, size_t skipFrom, size_t skipTo) {
  for (size_t i = 0; i < WORDS; i++) {
    if (i * 8 >= skipFrom && i * 8 < skipTo) continue;
    uint64_t w;
    memcpy(&w, p + i * 8, 8);
    if (w != word(page, i)) return 0;
  }
  return 1;
}

static void die(const char* what) {
  printf("FAIL: %s: %s\n", what, strerror(errno));
  exit(1);
}

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
  size_t npages = (mib << 20) / PAGE;
  unsigned char* r = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) die("mmap");
  for (size_t p = 0; p < npages; p++) {
    uint64_t* w = (uint64_t*)(r + p * PAGE);
    for (size_t i = 0; i < WORDS; i++) w[i] = p == HOLE ? 0 : word(p, i);
  }
  fprintf(stderr, "lazy: pages at %p\n", (void*)r);
  for (int step = 1; step <= 3; step++) {
    printf("STEP %d\n", step);
    fflush(stdout);
    struct timespec ts = {0, 200 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }

  /* The last pages: a lazy restart fills in the background from the lowest address. */
  const size_t t1 = npages - 1, t2 = npages - 2, t3 = npages - 3, t4 = npages - 4;
  unsigned char vec[4];
  int missing = 0;
  if (mincore(r + t4 * PAGE, 4 * PAGE, vec) == 0) {
    for (int i = 0; i < 4; i++) missing += !(vec[i] & 1);
  }
  fprintf(stderr, "lazy: %d of 4 target pages missing\n", missing);

  int pfd[2];
  if (pipe(pfd) != 0) die("pipe");
  /* write() from a page */
  unsigned char copy[PAGE];
  if (write(pfd[1], r + t1 * PAGE, PAGE) != PAGE) die("write from the page");
  if (read(pfd[0], copy, PAGE) != PAGE) die("read back");
  printf("write from a lazy page: %s\n", page_exact(copy, t1, 0, 0) ? "ok" : "WRONG");

  /* read() into the middle of a page: the rest of it keeps its contents */
  const char fresh[50] = "fifty bytes that a read() puts into the lazy page";
  if (write(pfd[1], fresh, sizeof(fresh)) != (ssize_t)sizeof(fresh)) die("write");
  if (read(pfd[0], r + t2 * PAGE + 100, sizeof(fresh)) != (ssize_t)sizeof(fresh)) die("read into the page");
  int ok = memcmp(r + t2 * PAGE + 100, fresh, sizeof(fresh)) == 0 && page_exact(r + t2 * PAGE, t2, 96, 152);
  printf("read into a lazy page: %s\n", ok ? "ok" : "WRONG");

  /* a blocking recv() into a page, from a forked child that checks its own copy */
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    int exact = 1;
    for (size_t p = t4; p > t4 - 64 && p > 0; p--) exact &= page_exact(r + p * PAGE, p, 0, 0);
    char msg[64];
    memset(msg, exact ? 'y' : 'n', sizeof(msg));
    if (send(sv[1], msg, sizeof(msg), 0) != (ssize_t)sizeof(msg)) _exit(2);
    _exit(exact ? 0 : 1);
  }
  if (recv(sv[0], r + t3 * PAGE + 200, 64, MSG_WAITALL) != 64) die("recv into the page");
  ok = page_exact(r + t3 * PAGE, t3, 200, 264);
  for (int i = 0; i < 64; i++) ok &= r[t3 * PAGE + 200 + i] == 'y';
  printf("recv into a lazy page: %s\n", ok ? "ok" : "WRONG");
  int status = 0;
  if (waitpid(child, &status, 0) != child) die("waitpid");
  printf("forked child saw exact memory: %s\n", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "WRONG");

  unsigned char v2[NMOVE];
  missing = 0;
  if (mincore(r + DROP * PAGE, NDROP * PAGE, v2) == 0)
    for (int i = 0; i < NDROP; i++) missing += !(v2[i] & 1);
  if (mincore(r + MOVE * PAGE, NMOVE * PAGE, v2) == 0)
    for (int i = 0; i < NMOVE; i++) missing += !(v2[i] & 1);
  fprintf(stderr, "lazy: %d of %d moved or dropped pages missing\n", missing, NDROP + NMOVE);
  if (madvise(r + DROP * PAGE, NDROP * PAGE, MADV_DONTNEED) != 0) die("madvise");
  ok = 1;
  for (size_t i = 0; i < NDROP * PAGE; i++) ok &= r[DROP * PAGE + i] == 0;
  printf("dropped pages read zero: %s\n", ok ? "ok" : "WRONG");
  unsigned char* dst = mmap(NULL, NMOVE * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (dst == MAP_FAILED) die("mmap");
  if (mremap(r + MOVE * PAGE, NMOVE * PAGE, NMOVE * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dst) != dst) die("mremap");
  ok = 1;
  for (size_t p = 0; p < NMOVE; p++) {
    if (MOVE + p != HOLE) {
      ok &= page_exact(dst + p * PAGE, MOVE + p, 0, 0);
    } else {
      for (size_t i = 0; i < PAGE; i++) ok &= dst[p * PAGE + i] == 0;
    }
  }
  printf("moved pages kept their contents: %s\n", ok ? "ok" : "WRONG");

  size_t exact = 0, checked = 0;
  for (size_t p = 0; p < npages; p++) {
    if ((p >= DROP && p < DROP + NDROP) || (p >= MOVE && p < MOVE + NMOVE)) continue;
    checked++;
    if (p == t2) exact += page_exact(r + p * PAGE, p, 96, 152);
    else if (p == t3) exact += page_exact(r + p * PAGE, p, 200, 264);
    else exact += page_exact(r + p * PAGE, p, 0, 0);
  }
  printf("%zu of %zu pages exact\n", exact, checked);
  return exact == checked ? 0 : 1;
}
