/* shared_anon: MAP_SHARED|MAP_ANONYMOUS memory between two threads that hand
 * data over through it and synchronise with shared (not private) futexes on
 * words inside it. The producer fills one page per step and publishes its
 * number; the consumer, blocked in FUTEX_WAIT on that word, verifies the
 * page and acknowledges. Built with -DALIAS (shared_anon_alias), the
 * consumer sees the memory through a second mapping of the same pages (made
 * with mremap(old_size 0)): the producer's futex wake on one view must wake
 * the waiter on the other, which only works if both views are still one
 * shared object.
 *
 * usage: shared_anon [STEPS]   (default 30 steps of 100 ms)
 */
#include "feature.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>

enum { PAGE = 4096, PAGES = 64, STEP_MS = 100, WAIT_LIMIT_MS = 20000 };

struct shared {
  _Atomic uint32_t seq;  /* last page published by the producer */
  _Atomic uint32_t ack;  /* last page verified by the consumer */
  char pad[PAGE - 8];
  uint64_t data[PAGES - 1][PAGE / 8];
};

static struct shared *view1, *view2;  /* producer's and consumer's views */
static int steps;

/* Waits (shared futex) until *word == want; fails after WAIT_LIMIT_MS. */
static void wait_for(_Atomic uint32_t *word, uint32_t want, const char *who)
{
  int64_t deadline = mono_ns() + WAIT_LIMIT_MS * 1000000LL;
  uint32_t v;
  while ((v = atomic_load(word)) != want) {
    CHECK(v < want, "%s: word is %u, want %u", who, v, want);
    struct timespec ts = { 0, 100 * 1000000L };
    long r = syscall(SYS_futex, word, FUTEX_WAIT, v, &ts, NULL, 0);
    CHECK(r == 0 || errno == EAGAIN || errno == ETIMEDOUT || errno == EINTR, "%s: futex wait: %s", who,
          strerror(errno));
    CHECK(mono_ns() < deadline, "%s: no wake-up for %u within %d ms (memory no longer shared?)", who, want,
          WAIT_LIMIT_MS);
  }
}

static void wake(_Atomic uint32_t *word)
{
  CHECK(syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0) >= 0, "futex wake: %s", strerror(errno));
}

static uint64_t word_at(int s, size_t w) { return mix64(((uint64_t)s << 20) + w); }

static void *producer(void *arg)
{
  (void)arg;
  for (int s = 1; s <= steps; s++) {
    uint64_t *page = view1->data[(s - 1) % (PAGES - 1)];
    for (size_t w = 0; w < PAGE / 8; w++)
      page[w] = word_at(s, w);
    atomic_store(&view1->seq, (uint32_t)s);
    wake(&view1->seq);
    wait_for(&view1->ack, (uint32_t)s, "producer");
    feature_step(s);
    sleep_ms(STEP_MS);
  }
  return NULL;
}

static void *consumer(void *arg)
{
  uint64_t *sum = arg;
  for (int s = 1; s <= steps; s++) {
    wait_for(&view2->seq, (uint32_t)s, "consumer");
    const uint64_t *page = view2->data[(s - 1) % (PAGES - 1)];
    for (size_t w = 0; w < PAGE / 8; w++) {
      CHECK(page[w] == word_at(s, w), "consumer: step %d word %zu differs", s, w);
      *sum += page[w];
    }
    atomic_store(&view2->ack, (uint32_t)s);
    wake(&view2->ack);
  }
  return NULL;
}

int main(int argc, char **argv)
{
  steps = argc > 1 ? parse_int(argv[1]) : 30;
  view1 = mmap(NULL, sizeof *view1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(view1 != MAP_FAILED, "mmap: %s", strerror(errno));
#ifdef ALIAS
  view2 = mremap(view1, 0, sizeof *view1, MREMAP_MAYMOVE);
  CHECK(view2 != MAP_FAILED, "mremap alias: %s", strerror(errno));
  CHECK(view2 != view1, "alias at the same address");
  const char *name = "shared_anon_alias";
#else
  view2 = view1;
  const char *name = "shared_anon";
#endif

  printf("%s: %d steps\n", name, steps);
  pthread_t tp, tc;
  uint64_t sum = 0;
  CHECK(pthread_create(&tc, NULL, consumer, &sum) == 0, "pthread_create");
  CHECK(pthread_create(&tp, NULL, producer, NULL) == 0, "pthread_create");
  CHECK(pthread_join(tp, NULL) == 0 && pthread_join(tc, NULL) == 0, "pthread_join");

  view1->data[PAGES - 2][0] = 0x1234567890abcdefULL;  /* one more write, seen through both views */
  CHECK(view2->data[PAGES - 2][0] == 0x1234567890abcdefULL, "the views no longer share memory");
  printf("consumer sum %016llx\n", (unsigned long long)sum);
  printf("shared fnv %016llx\n", (unsigned long long)fnv1a(FNV_INIT, view2, sizeof *view2));
  print_map_perms("view1", view1, sizeof *view1);
#ifdef ALIAS
  print_map_perms("view2", view2, sizeof *view2);
#endif
  printf("PASS\n");
  return 0;
}
