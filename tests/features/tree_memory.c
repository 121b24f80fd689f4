/* tree_memory: a tree of MEMBERS processes (root and MEMBERS-1 children), each
 * rewriting a region of its own every step, in lockstep: the root sends each child
 * the step number down a pipe, every member checks that its whole region holds the
 * step before's pattern (a pattern of the page, the member and the step), writes the
 * step's over it, and the children answer their region's checksum up a pipe of their
 * own; the root prints the sums and the step. A checkpoint of the tree whose memory is
 * written while the members run (a concurrent one) must hold each member's region as
 * it was at the freeze, one step for every page: a page taken after the member wrote
 * it again fails the next step's check after a restart, naming the page.
 * At the end the root sends 0, the children exit with their index and the root
 * reaps each by PID and checks its status.
 *
 * usage: tree_memory [SIZE [STEPS [MEMBERS]]]   (SIZE per member; default 16M, 20, 4)
 */
#include "feature.h"

#include <sys/mman.h>
#include <sys/wait.h>

enum { PAGE = 4096, WORDS = PAGE / 8, STEP_MS = 30, MAX_MEMBERS = 16 };

static uint64_t *region;
static size_t npages;

static uint64_t word(size_t page, size_t i, int member, uint32_t step)
{
  return mix64(((uint64_t)page << 24) ^ ((uint64_t)member << 16) ^ step) + i * 0x9e3779b97f4a7c15ULL;
}

/* Checks that the region holds step `step - 1` (nothing before step 1), writes
 * step `step` over it, and returns a checksum of what it wrote. */
static uint64_t step_region(int member, uint32_t step)
{
  uint64_t sum = FNV_INIT;
  for (size_t p = 0; p < npages; p++) {
    uint64_t *w = region + p * WORDS;
    for (size_t i = 0; i < WORDS; i++) {
      uint64_t want = step == 1 ? 0 : word(p, i, member, step - 1);
      if (w[i] != want)
        feature_fail("member %d, step %u: page %zu word %zu is %016llx, want %016llx (step %u's)", member, step,
                     p, i, (unsigned long long)w[i], (unsigned long long)want, step - 1);
      w[i] = word(p, i, member, step);
    }
    sum = fnv1a(sum, &w[0], 8);
  }
  return sum;
}

static void child(int member, int in, int out)
{
  for (;;) {
    uint32_t step;
    read_full(in, &step, sizeof step, "child");
    if (step == 0) _exit(member);
    uint64_t sum = step_region(member, step);
    write_all(out, &sum, sizeof sum);
  }
}

int main(int argc, char **argv)
{
  uint64_t size = argc > 1 ? parse_size(argv[1]) : (16ULL << 20);
  int steps = argc > 2 ? parse_int(argv[2]) : 20;
  int members = argc > 3 ? parse_int(argv[3]) : 4;
  CHECK(members >= 2 && members <= MAX_MEMBERS, "2 to %d members, not %d", MAX_MEMBERS, members);
  npages = size / PAGE;
  CHECK(npages > 0, "size too small");
  region = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(region != MAP_FAILED, "mmap %zu pages: %s", npages, strerror(errno));

  int down[MAX_MEMBERS][2], up[MAX_MEMBERS][2];
  pid_t kids[MAX_MEMBERS];
  printf("tree_memory: %d members of %zu pages, %d steps\n", members, npages, steps);
  fflush(stdout);
  for (int k = 1; k < members; k++) {
    CHECK_SYS(pipe(down[k]));
    CHECK_SYS(pipe(up[k]));
    kids[k] = fork();
    CHECK_SYS(kids[k]);
    if (kids[k] == 0) {
      for (int j = 1; j < k; j++) {
        close(down[j][1]);
        close(up[j][0]);
      }
      close(down[k][1]);
      close(up[k][0]);
      child(k, down[k][0], up[k][1]);
    }
    close(down[k][0]);
    close(up[k][1]);
  }
  for (uint32_t s = 1; s <= (uint32_t)steps; s++) {
    for (int k = 1; k < members; k++) write_all(down[k][1], &s, sizeof s);
    uint64_t sums[MAX_MEMBERS];
    sums[0] = step_region(0, s);
    for (int k = 1; k < members; k++) read_full(up[k][0], &sums[k], sizeof sums[k], "root");
    printf("step %u:", s);
    for (int k = 0; k < members; k++) printf(" %016llx", (unsigned long long)sums[k]);
    printf("\n");
    feature_step((int)s);
    sleep_ms(STEP_MS);
  }
  uint32_t end = 0;
  for (int k = 1; k < members; k++) write_all(down[k][1], &end, sizeof end);
  for (int k = 1; k < members; k++) {
    int status;
    CHECK(waitpid(kids[k], &status, 0) == kids[k], "waitpid(%d): %s", kids[k], strerror(errno));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == k, "member %d ended with status 0x%x", k, status);
  }
  printf("tree_memory: done\n");
  return 0;
}
