/* udp: datagram sockets that must come back bound (and connected) after a checkpoint
 * and a restart.
 * - server: UDP bound to 127.0.0.1:0, O_NONBLOCK, SO_RCVBUF set.
 * - client: UDP bound to 127.0.0.1:0 and connected to the server.
 * - spare: UDP never bound, SO_BROADCAST set: it must stay unbound.
 * - unix: a Unix datagram socket bound to a path in DIR, sent to from an unbound one.
 * Every step the client sends a numbered datagram to the server, which checks where it
 * came from and answers with sendto; the Unix socket gets one datagram per step.
 * A datagram a checkpoint catches in flight is lost (not saved): it is sent again.
 *
 * usage: udp DIR [STEPS]     (default 12 steps of 50 ms)
 */
#include "feature.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

enum { STEP_MS = 50 };

static void addr_of(int fd, struct sockaddr_in *a)
{
  socklen_t l = sizeof *a;
  CHECK_SYS(getsockname(fd, (struct sockaddr *)a, &l));
}

static int same(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
  return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
}

/* Datagrams waiting in a socket at a checkpoint are not saved (the checkpoint warns):
 * a checkpoint between a send and its receive loses one, as a network may. Like any
 * UDP program this one sends again when no answer came (after 2 s: only then), and
 * every datagram carries its step so that a late one is told from the answer. */
enum { TRIES = 10, WAIT_MS = 2000 };

static int readable(int fd)
{
  struct pollfd p = { fd, POLLIN, 0 };
  return poll(&p, 1, WAIT_MS) == 1;
}

/* Receives on fd until the datagram "WORD STEP" comes; 0 if none came in time.
 * Stale ones (an earlier step's, sent again) are dropped. */
static ssize_t receive(int fd, const char *word, int step, char *got, size_t size, struct sockaddr_in *from)
{
  char want[64];
  int n = snprintf(want, sizeof want, "%s %d", word, step);
  for (;;) {
    if (!readable(fd))
      return 0;
    socklen_t l = sizeof *from;
    ssize_t r = recvfrom(fd, got, size, MSG_DONTWAIT, (struct sockaddr *)from, from ? &l : NULL);
    if (r < 0 && errno == EAGAIN)
      continue;
    CHECK(r >= 0, "step %d: recvfrom: %s", step, strerror(errno));
    if (r == n && memcmp(got, want, (size_t)n) == 0)
      return r;
  }
}

/* One ping from the client to the server and its pong back; returns the pong's length. */
static ssize_t exchange(int client, int server, const struct sockaddr_in *ca, int s, char *got)
{
  for (int t = 0; t < TRIES; t++) {
    char msg[64];
    int n = snprintf(msg, sizeof msg, "ping %d", s);
    CHECK(send(client, msg, (size_t)n, 0) == n, "step %d: send: %s", s, strerror(errno));
    struct sockaddr_in from;
    if (receive(server, "ping", s, got, 64, &from) == 0)
      continue;
    CHECK(same(&from, ca), "step %d: the ping came from elsewhere", s);
    n = snprintf(msg, sizeof msg, "pong %d", s);
    CHECK(sendto(server, msg, (size_t)n, 0, (struct sockaddr *)&from, sizeof from) == n, "step %d: sendto: %s", s,
          strerror(errno));
    ssize_t r = receive(client, "pong", s, got, 64, NULL);
    if (r > 0)
      return r;
  }
  feature_fail("step %d: no pong after %d tries", s, TRIES);
}

static ssize_t unix_exchange(int out, int in, const struct sockaddr_un *un, int s, char *got)
{
  for (int t = 0; t < TRIES; t++) {
    char msg[64];
    int n = snprintf(msg, sizeof msg, "unix %d", s);
    CHECK(sendto(out, msg, (size_t)n, 0, (const struct sockaddr *)un, sizeof *un) == n, "step %d: unix sendto: %s",
          s, strerror(errno));
    ssize_t r = receive(in, "unix", s, got, 64, NULL);
    if (r > 0)
      return r;
  }
  feature_fail("step %d: the unix socket got nothing after %d tries", s, TRIES);
}

int main(int argc, char **argv)
{
  CHECK(argc >= 2, "usage: udp DIR [STEPS]");
  int steps = argc > 2 ? parse_int(argv[2]) : 12;
  struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  int server, client, spare, ux, ux_out;
  CHECK_SYS(server = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0));
  int rcv = 150000, on = 1;
  CHECK_SYS(setsockopt(server, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv));
  CHECK_SYS(bind(server, (struct sockaddr *)&lo, sizeof lo));
  CHECK_SYS(client = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  CHECK_SYS(bind(client, (struct sockaddr *)&lo, sizeof lo));
  struct sockaddr_in sa, ca;
  addr_of(server, &sa);
  addr_of(client, &ca);
  CHECK_SYS(connect(client, (struct sockaddr *)&sa, sizeof sa));
  CHECK_SYS(spare = socket(AF_INET, SOCK_DGRAM, 0));
  CHECK_SYS(setsockopt(spare, SOL_SOCKET, SO_BROADCAST, &on, sizeof on));
  socklen_t l = sizeof rcv;
  CHECK_SYS(getsockopt(server, SOL_SOCKET, SO_RCVBUF, &rcv, &l));

  struct sockaddr_un un = { .sun_family = AF_UNIX };
  CHECK((size_t)snprintf(un.sun_path, sizeof un.sun_path, "%s/udp.sock", argv[1]) < sizeof un.sun_path,
        "DIR is too long for a socket path");
  CHECK_SYS(ux = socket(AF_UNIX, SOCK_DGRAM, 0));
  CHECK_SYS(bind(ux, (struct sockaddr *)&un, sizeof un));
  CHECK_SYS(ux_out = socket(AF_UNIX, SOCK_DGRAM, 0));

  printf("udp: %d steps\n", steps);
  uint64_t sums = FNV_INIT;
  for (int s = 1; s <= steps; s++) {
    struct sockaddr_in now;
    addr_of(server, &now);
    CHECK(same(&now, &sa), "step %d: the server is bound elsewhere now", s);
    addr_of(client, &now);
    CHECK(same(&now, &ca), "step %d: the client is bound elsewhere now", s);
    l = sizeof now;
    CHECK(getpeername(client, (struct sockaddr *)&now, &l) == 0 && same(&now, &sa),
          "step %d: the client is not connected to the server now", s);

    char got[64];
    ssize_t r = exchange(client, server, &ca, s, got);
    sums = fnv1a(sums, got, (size_t)r);
    r = unix_exchange(ux_out, ux, &un, s, got);
    sums = fnv1a(sums, got, (size_t)r);
    feature_step(s);
    sleep_ms(STEP_MS);
  }
  struct sockaddr_in sp;
  addr_of(spare, &sp);
  CHECK(sp.sin_port == 0, "the spare socket got bound");
  int v = 0;
  l = sizeof v;
  CHECK(getsockopt(spare, SOL_SOCKET, SO_BROADCAST, &v, &l) == 0 && v == 1, "SO_BROADCAST lost");
  CHECK(getsockopt(server, SOL_SOCKET, SO_RCVBUF, &v, &l) == 0 && v == rcv, "SO_RCVBUF is %d, was %d", v, rcv);
  CHECK((fcntl(server, F_GETFL) & O_NONBLOCK) && !(fcntl(client, F_GETFL) & O_NONBLOCK), "O_NONBLOCK changed");
  CHECK(fcntl(client, F_GETFD) == FD_CLOEXEC && fcntl(server, F_GETFD) == 0, "FD_CLOEXEC changed");
  printf("every ping answered, checksum %016llx\n", (unsigned long long)sums);
  printf("PASS\n");
  return 0;
}
