/* udp: datagram sockets that must come back bound (and connected) after a checkpoint
 * and a restart.
 * - server: UDP bound to 127.0.0.1:0, O_NONBLOCK, SO_RCVBUF set.
 * - client: UDP bound to 127.0.0.1:0 and connected to the server.
 * - spare: UDP never bound, SO_BROADCAST set: it must stay unbound.
 * - unix: a Unix datagram socket bound to a path in DIR, sent to from an unbound one.
 * Every step the client sends a numbered datagram to the server, which checks where it
 * came from and answers with sendto; the Unix socket gets one datagram per step.
 * Nothing waits in a socket at a step boundary (datagrams in flight are not saved).
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

static void wait_readable(int fd, int step)
{
  struct pollfd p = { fd, POLLIN, 0 };
  CHECK(poll(&p, 1, 10000) == 1, "step %d: nothing arrived within 10 s", step);
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

    char msg[64], got[64];
    int n = snprintf(msg, sizeof msg, "ping %d", s);
    CHECK(send(client, msg, (size_t)n, 0) == n, "step %d: send: %s", s, strerror(errno));
    wait_readable(server, s);
    struct sockaddr_in from;
    l = sizeof from;
    ssize_t r = recvfrom(server, got, sizeof got, 0, (struct sockaddr *)&from, &l);
    CHECK(r == n && memcmp(got, msg, (size_t)n) == 0, "step %d: the server got %zd bytes", s, r);
    CHECK(same(&from, &ca), "step %d: the ping came from elsewhere", s);
    n = snprintf(msg, sizeof msg, "pong %d", s);
    CHECK(sendto(server, msg, (size_t)n, 0, (struct sockaddr *)&from, l) == n, "step %d: sendto: %s", s,
          strerror(errno));
    r = recv(client, got, sizeof got, 0);
    CHECK(r == n && memcmp(got, msg, (size_t)n) == 0, "step %d: the client got %zd bytes", s, r);
    sums = fnv1a(sums, got, (size_t)r);

    n = snprintf(msg, sizeof msg, "unix %d", s);
    CHECK(sendto(ux_out, msg, (size_t)n, 0, (struct sockaddr *)&un, sizeof un) == n, "step %d: unix sendto: %s",
          s, strerror(errno));
    r = recv(ux, got, sizeof got, 0);
    CHECK(r == n && memcmp(got, msg, (size_t)n) == 0, "step %d: the unix socket got %zd bytes", s, r);
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
