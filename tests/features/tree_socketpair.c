/* tree_socketpair: a root and its child talking over two socketpairs made before
 * the fork, a stream one and a datagram one: each round the root sends three
 * numbers on the stream pair and a datagram naming the round; the child reads them
 * with pauses (so bytes and a datagram wait at a checkpoint) and answers on the
 * stream pair. After a restart each pair must be one connection again between the
 * two processes, with what waited in it, datagram borders kept; the root holds
 * both ends of the stream pair (the child's too).
 * usage: tree_socketpair (30 rounds) */
#include "feature.h"

#include <sys/socket.h>
#include <sys/wait.h>

#define ROUNDS 30

int main(void)
{
  int st[2], dg[2];
  CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, st));
  CHECK_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg));
  pid_t kid = fork();
  CHECK_SYS(kid);
  if (kid == 0) {
    close(st[0]);
    close(dg[0]);
    for (;;) {
      long v[3];
      for (int i = 0; i < 3; i++) {
        read_full(st[1], &v[i], sizeof v[i], "child");
        if (v[i] < 0) _exit(0);
        sleep_ms(20); /* the rest waits in the pair meanwhile */
      }
      char d[64];
      ssize_t n = recv(dg[1], d, sizeof d - 1, 0);
      CHECK(n > 0, "child: recv: %s", strerror(errno));
      d[n] = '\0';
      char want[64];
      snprintf(want, sizeof want, "round %ld", (v[0] - 1) / 100);
      CHECK(strcmp(d, want) == 0, "child: datagram '%s', want '%s'", d, want);
      long sum = v[0] + v[1] + v[2];
      CHECK(write(st[1], &sum, sizeof sum) == (ssize_t)sizeof sum, "child: write: %s", strerror(errno));
    }
  }
  /* The root keeps the child's stream end open too (as a parent does until it
   * closes what it gave away): that end is then held by both processes. */
  close(dg[1]);
  long total = 0;
  for (long r = 1; r <= ROUNDS; r++) {
    char d[64];
    int n = snprintf(d, sizeof d, "round %ld", r);
    CHECK(send(dg[0], d, (size_t)n, 0) == n, "root: send: %s", strerror(errno));
    long v[3] = { r * 100 + 1, r * 100 + 2, r * 100 + 3 };
    CHECK(write(st[0], v, sizeof v) == (ssize_t)sizeof v, "root: write: %s", strerror(errno));
    long sum;
    read_full(st[0], &sum, sizeof sum, "root");
    CHECK(sum == r * 300 + 6, "round %ld: the child summed %ld, want %ld", r, sum, r * 300 + 6);
    total += sum;
    feature_step((int)r);
  }
  long end = -1;
  CHECK(write(st[0], &end, sizeof end) == (ssize_t)sizeof end, "root: write: %s", strerror(errno));
  int status;
  CHECK(waitpid(kid, &status, 0) == kid, "waitpid: %s", strerror(errno));
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ended with status %#x", status);
  printf("2 socketpairs between 2 processes: %d rounds, total %ld\n", ROUNDS, total);
  puts("PASS");
  return 0;
}
