/* tree_session: a process group and a session inside the tree. The root forks A,
 * which makes a session of its own (setsid) and forks B, leader of a new group in
 * it, and C, which joins B's group. Each checks its session, group and parent every
 * 100 ms until its pipe from the root closes; the root checks them from outside
 * (getsid, getpgid) every step. Then C, B and A exit 0 if every check held. */
#include "feature.h"

#include <poll.h>
#include <sys/wait.h>

static int watch(int stop, pid_t sid, pid_t pgid, pid_t ppid)
{
  for (;;) {
    if (getsid(0) != sid || getpgrp() != pgid || getppid() != ppid) {
      fprintf(stderr, "FAIL: %d: session %d (want %d), group %d (want %d), parent %d (want %d)\n", getpid(),
              getsid(0), sid, getpgrp(), pgid, getppid(), ppid);
      return 1;
    }
    struct pollfd p = {stop, POLLIN, 0};
    int r = poll(&p, 1, 100);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return 1;
    if (r > 0) {
      char c;
      if (read(stop, &c, 1) <= 0) return 0;
    }
  }
}

int main(void)
{
  int stop[2];
  CHECK_SYS(pipe(stop));
  int ids[2];
  CHECK_SYS(pipe(ids));
  pid_t root = getpid();
  pid_t a = fork();
  CHECK_SYS(a);
  if (a == 0) {
    close(stop[1]);
    close(ids[0]);
    CHECK_SYS(setsid());
    pid_t self = getpid();
    pid_t b = fork();
    CHECK_SYS(b);
    if (b == 0) {
      CHECK_SYS(setpgid(0, 0));
      _exit(watch(stop[0], self, getpid(), self));
    }
    setpgid(b, b); /* as a shell does: the group exists before C joins it */
    pid_t c = fork();
    CHECK_SYS(c);
    if (c == 0) {
      CHECK_SYS(setpgid(0, b));
      _exit(watch(stop[0], self, b, self));
    }
    setpgid(c, b); /* from this side too, so the root never sees it in A's group */
    pid_t both[2] = {b, c};
    CHECK(write(ids[1], both, sizeof both) == (ssize_t)sizeof both, "write: %s", strerror(errno));
    int bad = watch(stop[0], self, self, root);
    int st;
    CHECK(waitpid(b, &st, 0) == b, "waitpid(B): %s", strerror(errno));
    bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    CHECK(waitpid(c, &st, 0) == c, "waitpid(C): %s", strerror(errno));
    bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    _exit(bad);
  }
  close(stop[0]);
  close(ids[1]);
  pid_t bc[2];
  CHECK(read(ids[0], bc, sizeof bc) == (ssize_t)sizeof bc, "read: %s", strerror(errno));
  for (int step = 1; step <= 30; step++) {
    CHECK(getsid(a) == a && getpgid(a) == a, "A: session %d group %d", getsid(a), getpgid(a));
    CHECK(getsid(bc[0]) == a && getpgid(bc[0]) == bc[0], "B: session %d group %d", getsid(bc[0]), getpgid(bc[0]));
    CHECK(getsid(bc[1]) == a && getpgid(bc[1]) == bc[0], "C: session %d group %d", getsid(bc[1]), getpgid(bc[1]));
    CHECK(getsid(0) != a, "the root is in A's session");
    sleep_ms(50);
    feature_step(step);
  }
  close(stop[1]);
  int st;
  CHECK(waitpid(a, &st, 0) == a, "waitpid(A): %s", strerror(errno));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "A (or B, C) saw a wrong session or group: %#x", st);
  puts("session A with group B (B, C): held");
  puts("PASS");
  return 0;
}
