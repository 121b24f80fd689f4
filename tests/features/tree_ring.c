/* tree_ring: a tree of 3 (root, two children) passing a counter round a ring of
 * three pipes (root -> c1 -> c2 -> root); each adds one. The token is always in
 * flight in one pipe or held by one process, so a checkpoint of the tree takes
 * pipes between members with bytes in them. Every round each process checks its
 * parent (getppid), the root signals both children (kill(pid, 0)); at the end the
 * root sends -1 round the ring, the children exit 0 and 5 and the root reaps each
 * by PID (waitpid) and checks the status. usage: tree_ring [ROUNDS] (default 30; a
 * concurrent checkpoint's test gives more, since the job runs on past its moment and
 * must still run when a slow migctl gets to it). */
#include "feature.h"

#include <sys/wait.h>


static void child(int in, int out, pid_t parent, int status)
{
  for (;;) {
    long v;
    ssize_t n = read(in, &v, sizeof v);
    if (n != (ssize_t)sizeof v) feature_fail("child %d: read %zd: %s", status, n, strerror(errno));
    CHECK(getppid() == parent, "child: getppid() %d, parent was %d", getppid(), parent);
    if (v >= 0) v++;
    CHECK(write(out, &v, sizeof v) == (ssize_t)sizeof v, "child: write: %s", strerror(errno));
    if (v < 0) _exit(status);
  }
}

int main(int argc, char **argv)
{
  const int rounds = argc > 1 ? atoi(argv[1]) : 30;
  int p[3][2]; /* p[0]: root -> c1, p[1]: c1 -> c2, p[2]: c2 -> root */
  for (int i = 0; i < 3; i++) CHECK_SYS(pipe(p[i]));
  pid_t self = getpid();
  pid_t kids[2];
  for (int k = 0; k < 2; k++) {
    kids[k] = fork();
    CHECK_SYS(kids[k]);
    if (kids[k] == 0) {
      int in = p[k][0], out = p[k + 1][1];
      for (int i = 0; i < 3; i++) {
        if (p[i][0] != in) close(p[i][0]);
        if (p[i][1] != out) close(p[i][1]);
      }
      child(in, out, self, k == 0 ? 0 : 5);
    }
  }
  close(p[0][0]);
  close(p[1][0]);
  close(p[1][1]);
  close(p[2][1]);
  long v = 0;
  for (int r = 1; r <= rounds; r++) {
    v++;
    CHECK(write(p[0][1], &v, sizeof v) == (ssize_t)sizeof v, "root: write: %s", strerror(errno));
    sleep_ms(50); /* the token waits in a pipe between the children meanwhile */
    CHECK(read(p[2][0], &v, sizeof v) == (ssize_t)sizeof v, "root: read: %s", strerror(errno));
    CHECK(v == 3L * r, "round %d: counter %ld, want %ld", r, v, 3L * r);
    for (int k = 0; k < 2; k++) CHECK(kill(kids[k], 0) == 0, "kill(child %d, 0): %s", k, strerror(errno));
    feature_step(r);
  }
  v = -1;
  CHECK(write(p[0][1], &v, sizeof v) == (ssize_t)sizeof v, "root: write: %s", strerror(errno));
  CHECK(read(p[2][0], &v, sizeof v) == (ssize_t)sizeof v && v == -1, "root: the end did not come round");
  int status[2];
  for (int k = 1; k >= 0; k--) {
    pid_t got = waitpid(kids[k], &status[k], 0);
    CHECK(got == kids[k], "waitpid(child %d): %d: %s", k, got, strerror(errno));
    CHECK(WIFEXITED(status[k]), "child %d did not exit (status %#x)", k, status[k]);
  }
  CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD, "a child left over");
  printf("ring of 3: %d rounds, counter %ld, children exited %d and %d\n", rounds, 3L * rounds,
         WEXITSTATUS(status[0]), WEXITSTATUS(status[1]));
  puts("PASS");
  return 0;
}
