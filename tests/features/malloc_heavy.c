/* malloc_heavy: heavy malloc/calloc/realloc/posix_memalign/free at every
 * step, so whatever step the checkpoint falls on, the heap (brk arena and
 * mmap'ed chunks) keeps being used after the restart: blocks allocated before
 * it are verified and freed after it. Sizes are small (16 B..1 KiB), medium
 * (up to 64 KiB) and large (up to 4 MiB, above the mmap threshold). At the
 * end everything is verified and freed, the heap trimmed, small blocks are
 * allocated until the brk heap grows (sbrk(0) moves up), and brk() itself
 * must extend and shrink the heap.
 *
 * usage: malloc_heavy [STEPS [OPS_PER_STEP]]   (default 30 steps, 8000 ops)
 */
#include "feature.h"

#include <malloc.h>

enum { SLOTS = 4096, STEP_MS = 50 };

struct slot {
  unsigned char *p;
  size_t size;
  uint64_t seed;
};
static struct slot slots[SLOTS];

static size_t pick_size(uint64_t r)
{
  switch (r % 100) {
  case 0: return 128 * 1024 + (r >> 8) % (4u << 20);   /* large: mmap'ed */
  case 1: case 2: case 3: case 4: case 5: return 1024 + (r >> 8) % (64 * 1024);
  default: return 16 + (r >> 8) % 1024;
  }
}

/* Big blocks get their head, tail and one word per page patterned. */
static void pattern(struct slot *s, int verify)
{
  size_t n = s->size;
  for (size_t i = 0; i < n; i++) {
    if (n > 65536 && i == 4096)
      i = n - 4096 > i ? n - 4096 : i;
    unsigned char want = (unsigned char)(s->seed + i * 131);
    if (verify)
      CHECK(s->p[i] == want, "block of %zu bytes: byte %zu is %d, want %d", n, i, s->p[i], want);
    else
      s->p[i] = want;
  }
  for (size_t i = 4096 + 7; n > 65536 && i < n - 4096; i += 4096) {  /* between head and tail */
    unsigned char want = (unsigned char)(s->seed ^ (i >> 12));
    if (verify)
      CHECK(s->p[i] == want, "block of %zu bytes: page byte %zu", n, i);
    else
      s->p[i] = want;
  }
}

static void release(struct slot *s)
{
  if (!s->p)
    return;
  pattern(s, 1);
  free(s->p);
  s->p = NULL;
}

int main(int argc, char **argv)
{
  int steps = argc > 1 ? parse_int(argv[1]) : 30;
  int ops = argc > 2 ? parse_int(argv[2]) : 8000;
  uint64_t rng = 0x5eed, total = 0, count[4] = { 0 };

  printf("malloc_heavy: %d steps of %d operations\n", steps, ops);
  for (int s = 1; s <= steps; s++) {
    for (int k = 0; k < ops; k++) {
      uint64_t r = rng_next(&rng);
      struct slot *sl = &slots[r % SLOTS];
      r >>= 12;
      if (sl->p && r % 4 == 0) {   /* realloc keeps the prefix */
        size_t old = sl->size, n = pick_size(rng_next(&rng));
        pattern(sl, 1);
        unsigned char *q = realloc(sl->p, n);
        CHECK(q != NULL, "realloc(%zu) failed", n);
        for (size_t i = 0; i < (old < n ? old : n) && i < 4096; i++)
          CHECK(q[i] == (unsigned char)(sl->seed + i * 131), "realloc lost byte %zu", i);
        sl->p = q, sl->size = n;
        pattern(sl, 0);
        count[0]++;
        continue;
      }
      release(sl);
      sl->size = pick_size(rng_next(&rng));
      sl->seed = r;
      total += sl->size;
      switch ((r >> 3) % 8) {
      case 0:
        sl->p = calloc(1, sl->size);
        CHECK(sl->p != NULL, "calloc(%zu)", sl->size);
        for (size_t i = 0; i < sl->size; i += 61)
          CHECK(sl->p[i] == 0, "calloc(%zu) byte %zu not zero", sl->size, i);
        count[1]++;
        break;
      case 1: {
        void *q = NULL;
        int e = posix_memalign(&q, 256, sl->size);
        CHECK(e == 0 && ((uintptr_t)q & 255) == 0, "posix_memalign: %s", strerror(e));
        sl->p = q;
        count[2]++;
        break;
      }
      default:
        sl->p = malloc(sl->size);
        CHECK(sl->p != NULL, "malloc(%zu)", sl->size);
        count[3]++;
      }
      pattern(sl, 0);
    }
    feature_step(s);
    sleep_ms(STEP_MS);
  }

  for (int i = 0; i < SLOTS; i++)
    release(&slots[i]);
  malloc_trim(0);
  void *brk_before = sbrk(0);
  enum { SMALL = 64, NSMALL = 4 << 20 };
  unsigned char **small = malloc(NSMALL * sizeof *small);
  CHECK(small != NULL, "malloc table");
  int n = 0;
  while (n < NSMALL && sbrk(0) == brk_before) {  /* until the arena needs more brk */
    small[n] = malloc(SMALL);
    CHECK(small[n] != NULL, "small malloc %d", n);
    memset(small[n], n & 0xff, SMALL);
    n++;
  }
  CHECK((char *)sbrk(0) > (char *)brk_before, "%d small blocks did not grow the brk heap", n);
  for (int i = 0; i < n; i++) {
    CHECK(small[i][0] == (i & 0xff) && small[i][SMALL - 1] == (i & 0xff), "small block %d", i);
    free(small[i]);
  }
  /* The kernel's idea of the heap end must be the program's: extend it
   * directly and shrink it back. */
  char *end = sbrk(0);
  CHECK(brk(end + (1 << 20)) == 0, "brk(+1 MiB) failed: %s", strerror(errno));
  memset(end, 0x5a, 1 << 20);
  CHECK(brk(end) == 0, "brk(back) failed: %s", strerror(errno));
  free(small);
  malloc_trim(0);
  printf("allocated %llu bytes\n", (unsigned long long)total);
  printf("realloc %llu calloc %llu memalign %llu malloc %llu\n", (unsigned long long)count[0],
         (unsigned long long)count[1], (unsigned long long)count[2], (unsigned long long)count[3]);
  printf("brk heap grew\n");
  printf("PASS\n");
  return 0;
}
