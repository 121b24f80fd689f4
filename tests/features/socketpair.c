/* socketpair: Unix socketpairs inside the process, with data in flight in both
 * directions at every step boundary, that must come back connected with every byte
 * and every datagram boundary after a checkpoint and a restart.
 * - stream (a <-> b): each step writes a block of pseudo-random bytes each way (a's
 *   end non-blocking, b's with SO_SNDBUF set) and reads the previous step's blocks.
 * - dgram (c <-> d): each step sends three datagrams of different sizes each way and
 *   receives the previous step's, checking sizes and contents.
 * - seqpacket (e <-> f): one record each way per step, read a step later.
 * At the end the last step's data is read and the pairs are closed one side at a
 * time: the other side must read end of file.
 *
 * usage: socketpair [STEPS]     (default 12 steps of 50 ms)
 */
#include "feature.h"

#include <fcntl.h>
#include <sys/socket.h>

enum { STEP_MS = 50 };

static uint64_t fill(unsigned char *buf, size_t n, uint64_t seed)
{
  uint64_t s = mix64(seed) | 1;
  for (size_t i = 0; i < n; i++)
    buf[i] = (unsigned char)rng_next(&s);
  return fnv1a(FNV_INIT, buf, n);
}

static size_t block_len(int step, int dir) { return 1000 + (size_t)((step * 7919 + dir * 104729) % 20000); }
static size_t dgram_len(int step, int dir, int k) { return 1 + (size_t)((step * 31 + dir * 17 + k * 997) % 3000); }

static void send_all(int fd, const unsigned char *p, size_t n, const char *what)
{
  ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
  CHECK(w == (ssize_t)n, "send on %s: %s", what, w < 0 ? strerror(errno) : "short");
}

/* What the pairs carry at step s, direction dir (0: first end to second). */
static void put(int fd, int type, int s, int dir, const char *what)
{
  static unsigned char buf[32768];
  if (type == SOCK_STREAM) {
    size_t n = block_len(s, dir);
    fill(buf, n, (uint64_t)(s * 2 + dir));
    send_all(fd, buf, n, what);
  } else if (type == SOCK_DGRAM) {
    for (int k = 0; k < 3; k++) {
      size_t n = dgram_len(s, dir, k);
      fill(buf, n, (uint64_t)(s * 8 + dir * 4 + k));
      send_all(fd, buf, n, what);
    }
  } else {
    size_t n = dgram_len(s, dir, 5);
    fill(buf, n, (uint64_t)(s * 8 + dir * 4 + 3));
    send_all(fd, buf, n, what);
  }
}

static uint64_t take(int fd, int type, int s, int dir, const char *what)
{
  static unsigned char buf[32768], want[32768];
  uint64_t h = FNV_INIT;
  if (type == SOCK_STREAM) {
    size_t n = block_len(s, dir);
    fill(want, n, (uint64_t)(s * 2 + dir));
    read_full(fd, buf, n, what);
    CHECK(memcmp(buf, want, n) == 0, "step %d: %s block differs", s, what);
    return fnv1a(h, buf, n);
  }
  int count = type == SOCK_DGRAM ? 3 : 1;
  for (int k = 0; k < count; k++) {
    int kk = type == SOCK_DGRAM ? k : 5;
    size_t n = dgram_len(s, dir, kk);
    fill(want, n, type == SOCK_DGRAM ? (uint64_t)(s * 8 + dir * 4 + k) : (uint64_t)(s * 8 + dir * 4 + 3));
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    CHECK(r == (ssize_t)n, "step %d: %s datagram %d is %zd bytes, want %zu", s, what, k, r, n);
    CHECK(memcmp(buf, want, n) == 0, "step %d: %s datagram %d differs", s, what, k);
    h = fnv1a(h, buf, n);
  }
  return h;
}

int main(int argc, char **argv)
{
  int steps = argc > 1 ? parse_int(argv[1]) : 12;
  int types[3] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
  const char *names[3][2] = { { "stream a->b", "stream b->a" }, { "dgram c->d", "dgram d->c" },
                              { "seqpacket e->f", "seqpacket f->e" } };
  int sv[3][2];
  for (int t = 0; t < 3; t++)
    CHECK_SYS(socketpair(AF_UNIX, types[t] | (t == 1 ? SOCK_CLOEXEC : 0), 0, sv[t]));
  CHECK_SYS(fcntl(sv[0][0], F_SETFL, O_NONBLOCK));
  int sndbuf = 300000;
  CHECK_SYS(setsockopt(sv[0][1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf));
  int sndbuf_was = 0;
  socklen_t l = sizeof sndbuf_was;
  CHECK_SYS(getsockopt(sv[0][1], SOL_SOCKET, SO_SNDBUF, &sndbuf_was, &l));

  printf("socketpair: %d steps\n", steps);
  uint64_t sums = FNV_INIT;
  for (int s = 1; s <= steps; s++) {
    for (int t = 0; t < 3; t++) {
      put(sv[t][0], types[t], s, 0, names[t][0]);
      put(sv[t][1], types[t], s, 1, names[t][1]);
      if (s > 1) {
        sums ^= take(sv[t][1], types[t], s - 1, 0, names[t][0]);
        sums = mix64(sums ^ take(sv[t][0], types[t], s - 1, 1, names[t][1]));
      }
    }
    feature_step(s);
    sleep_ms(STEP_MS);
  }
  for (int t = 0; t < 3; t++) {
    sums ^= take(sv[t][1], types[t], steps, 0, names[t][0]);
    sums = mix64(sums ^ take(sv[t][0], types[t], steps, 1, names[t][1]));
  }
  int now = 0;
  l = sizeof now;
  CHECK_SYS(getsockopt(sv[0][1], SOL_SOCKET, SO_SNDBUF, &now, &l));
  CHECK(now == sndbuf_was, "SO_SNDBUF is %d, was %d", now, sndbuf_was);
  CHECK(fcntl(sv[0][0], F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
  CHECK(fcntl(sv[1][0], F_GETFD) == FD_CLOEXEC && fcntl(sv[0][0], F_GETFD) == 0, "FD_CLOEXEC changed");
  for (int t = 0; t < 3; t++) {
    int type = -1;
    l = sizeof type;
    CHECK_SYS(getsockopt(sv[t][0], SOL_SOCKET, SO_TYPE, &type, &l));
    CHECK(type == types[t], "pair %d has type %d, want %d", t, type, types[t]);
  }
  /* Still each other's peers: closing one end ends the other's stream. */
  CHECK_SYS(close(sv[0][1]));
  CHECK_SYS(fcntl(sv[0][0], F_SETFL, 0));
  char c;
  CHECK(read(sv[0][0], &c, 1) == 0, "stream a did not read end of file after b closed");
  CHECK_SYS(close(sv[2][0]));
  CHECK(recv(sv[2][1], &c, 1, 0) == 0, "seqpacket f did not read end of file after e closed");
  printf("all data came through, checksum %016llx\n", (unsigned long long)sums);
  printf("PASS\n");
  return 0;
}
