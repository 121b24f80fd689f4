/* precopy_job: the job of loopback_precopy.sh, written to be busy while its pages
 * are copied. It holds SIZE of anonymous memory, each page carrying a pattern of its
 * number and generation, and works in steps (about 20 ms each): every step rewrites
 * 64 pages chosen at random with a new generation, moves one page's worth of bytes
 * through a pipe with read() into a page and write() from another (the kernel writes
 * into memory that may be write-protected for tracking), and forks a child that
 * writes into its copy of the memory, checks that its parent's generations are
 * there, and exits with 0 (the parent checks the status). Prints "step N" after each
 * step. After at least MIN_STEPS steps, once STOP_FILE exists, it checks every word
 * of every page and prints "verified PAGES pages, STEPS steps, FORKS children, READS
 * reads" and "PASS"; any mismatch is one "FAIL: ..." line on stderr and exit 1.
 *
 * usage: precopy_job SIZE_MIB MIN_STEPS STOP_FILE */
#include "feature.h"

#include <sys/mman.h>
#include <sys/wait.h>

enum { PAGE = 4096, WORDS = PAGE / 8 };

static uint64_t *mem;
static unsigned char *gen;
static size_t npages;

static uint64_t word_of(size_t p, unsigned char g, size_t i)
{
  return mix64(((uint64_t)p << 8) | g) + i * 0x9e3779b97f4a7c15ULL;
}

static void fill(size_t p, unsigned char g)
{
  for (size_t i = 0; i < WORDS; i++)
    mem[p * WORDS + i] = word_of(p, g, i);
  gen[p] = g;
}

static int page_ok(size_t p)
{
  for (size_t i = 0; i < WORDS; i++)
    if (mem[p * WORDS + i] != word_of(p, gen[p], i))
      return 0;
  return 1;
}

int main(int argc, char **argv)
{
  CHECK(argc == 4, "usage: precopy_job SIZE_MIB MIN_STEPS STOP_FILE");
  npages = (size_t)parse_int(argv[1]) * (1 << 20) / PAGE;
  int steps = parse_int(argv[2]);
  /* Two spare pages at the end: the pipe's source and destination buffers. */
  mem = mmap(NULL, (npages + 2) * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
  gen = calloc(npages, 1);
  CHECK(gen != NULL, "calloc");
  for (size_t p = 0; p < npages; p++)
    fill(p, 1);
  unsigned char *src = (unsigned char *)(mem + npages * WORDS), *dst = src + PAGE;
  int pipefd[2];
  CHECK_SYS(pipe(pipefd));

  uint64_t rng = 12345;
  unsigned forks = 0, reads = 0;
  int s;
  for (s = 1; s <= steps || access(argv[3], F_OK) != 0; s++) {
    for (int k = 0; k < 64; k++) {
      rng = mix64(rng + (uint64_t)k);
      size_t p = (size_t)(rng % npages);
      fill(p, (unsigned char)(gen[p] % 250 + 2));
    }
    /* A kernel write into memory: read() into dst from a pipe fed by write() from src. */
    for (int i = 0; i < PAGE; i++)
      src[i] = (unsigned char)(s * 7 + i);
    CHECK(write(pipefd[1], src, PAGE) == PAGE, "write from memory: %s", strerror(errno));
    ssize_t got = 0;
    while (got < PAGE) {
      ssize_t n = read(pipefd[0], dst + got, PAGE - (size_t)got);
      CHECK(n > 0, "read into memory: %s", n < 0 ? strerror(errno) : "end of pipe");
      got += n;
    }
    CHECK(memcmp(src, dst, PAGE) == 0, "step %d: the page read through the pipe differs", s);
    reads++;
    /* A child writing its copy while the parent may be in a pre-copy round. */
    pid_t child = fork();
    CHECK_SYS(child);
    if (child == 0) {
      size_t p = (size_t)s % npages;
      unsigned char before = gen[p];
      if (!page_ok(p)) _exit(3);
      fill(p, (unsigned char)(before % 250 + 2));
      _exit(page_ok(p) ? 0 : 4);
    }
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "step %d: the child ended with status %#x", s, status);
    forks++;
    printf("step %d\n", s);
    fflush(stdout);
    sleep_ms(20);
  }
  for (size_t p = 0; p < npages; p++)
    if (!page_ok(p))
      feature_fail("page %zu does not hold generation %d", p, gen[p]);
  printf("verified %zu pages, %d steps, %u children, %u reads\n", npages, s - 1, forks, reads);
  printf("PASS\n");
  return 0;
}
