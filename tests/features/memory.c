/* memory: a large anonymous region with every page written and verified.
 * Each step fills the next 1/STEPS of the region with a pattern derived from
 * the page number and its generation, verifies the chunk filled by the step
 * before, and rewrites a few earlier pages with a new generation (so pages
 * dirtied again after a checkpoint are covered too). A second region is never
 * touched and must read back as zeros. A third, small one (below the size a
 * restart fills lazily, so always placed before the job runs) is written once. At the end every word
 * of every page is checked, then MADV_DONTNEED drops the small region and the
 * first pages of the large one, which must then read as zeros, as private
 * anonymous memory does (not as the bytes saved in an image).
 *
 * usage: memory [SIZE [STEPS]]   (SIZE like 64M or 1G; default 1G, 30 steps)
 */
#include "feature.h"

#include <sys/mman.h>

enum { PAGE = 4096, WORDS = PAGE / 8, STEP_MS = 50 };
#define UNTOUCHED_SIZE (64UL << 20)
#define DROPPED_SIZE (256UL << 10)

static uint64_t *region;
static unsigned char *gen;  /* generation of each page; 0 = not written yet */

static void fill_page(size_t p, unsigned char g)
{
  uint64_t *w = region + p * WORDS;
  uint64_t base = mix64(((uint64_t)p << 8) | g);
  for (size_t i = 0; i < WORDS; i++)
    w[i] = base + i * 0x9e3779b97f4a7c15ULL;
  gen[p] = g;
}

/* Verifies page p; returns a checksum contribution. */
static uint64_t check_page(size_t p)
{
  const uint64_t *w = region + p * WORDS;
  uint64_t base = mix64(((uint64_t)p << 8) | gen[p]), sum = 0;
  CHECK(gen[p] != 0, "page %zu was never written", p);
  for (size_t i = 0; i < WORDS; i++) {
    uint64_t want = base + i * 0x9e3779b97f4a7c15ULL;
    if (w[i] != want)
      feature_fail("page %zu word %zu: %016llx, want %016llx (generation %d)", p, i,
                   (unsigned long long)w[i], (unsigned long long)want, gen[p]);
    sum += w[i] ^ (w[i] >> 7);
  }
  return sum;
}

int main(int argc, char **argv)
{
  uint64_t size = argc > 1 ? parse_size(argv[1]) : (1ULL << 30);
  int steps = argc > 2 ? parse_int(argv[2]) : 30;
  size_t npages = size / PAGE;
  CHECK(npages >= (size_t)steps, "size too small for %d steps", steps);

  region = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(region != MAP_FAILED, "mmap %zu pages: %s", npages, strerror(errno));
  unsigned char *untouched = mmap(NULL, UNTOUCHED_SIZE, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(untouched != MAP_FAILED, "mmap: %s", strerror(errno));
  gen = calloc(npages, 1);
  CHECK(gen != NULL, "calloc");
  unsigned char *dropped = mmap(NULL, DROPPED_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(dropped != MAP_FAILED, "mmap: %s", strerror(errno));
  memset(dropped, 0xa5, DROPPED_SIZE);

  printf("memory: %zu pages in %d steps\n", npages, steps);
  size_t chunk = (npages + steps - 1) / steps, rewritten = 0;
  for (int s = 0; s < steps; s++) {
    size_t lo = (size_t)s * chunk, hi = lo + chunk > npages ? npages : lo + chunk;
    for (size_t p = lo; p < hi; p++)
      fill_page(p, 1);
    if (s > 0)
      for (size_t p = lo - chunk; p < lo; p++)
        check_page(p);
    for (int k = 0; k < 16 && hi > 0; k++) {  /* rewrite some earlier pages */
      size_t p = (size_t)(mix64((uint64_t)s * 16 + k) % hi);
      fill_page(p, (unsigned char)(gen[p] % 250 + 2));
      rewritten++;
    }
    feature_step(s + 1);
    sleep_ms(STEP_MS);
  }

  uint64_t sum = 0;
  for (size_t p = 0; p < npages; p++)
    sum += check_page(p);
  for (size_t i = 0; i < UNTOUCHED_SIZE; i += 512)
    CHECK(untouched[i] == 0, "untouched region byte %zu is %d", i, untouched[i]);
  size_t dropped_pages = npages < 16 ? npages : 16;
  CHECK_SYS(madvise(dropped, DROPPED_SIZE, MADV_DONTNEED));
  CHECK_SYS(madvise(region, dropped_pages * PAGE, MADV_DONTNEED));
  for (size_t i = 0; i < DROPPED_SIZE; i++)
    CHECK(dropped[i] == 0, "small region byte %zu is %#x after MADV_DONTNEED, want 0", i, dropped[i]);
  for (size_t i = 0; i < dropped_pages * WORDS; i++)
    CHECK(region[i] == 0, "page %zu word %zu is %016llx after MADV_DONTNEED, want 0", i / WORDS, i % WORDS,
          (unsigned long long)region[i]);
  printf("pages verified %zu\n", npages);
  printf("pages rewritten %zu\n", rewritten);
  printf("checksum %016llx\n", (unsigned long long)sum);
  printf("untouched region zero\n");
  printf("dropped pages zero\n");
  printf("PASS\n");
  return 0;
}
