/* listen: listening sockets that must come back bound to the same address, listening,
 * with their options, after a checkpoint and a restart. Every step the program
 * connects to each of its listeners, sends a line, accepts, echoes it back and checks
 * the echo, then closes both ends (the server end first: its port has connections in
 * TIME_WAIT at the checkpoint, which must not keep it from listening again).
 * - tcp4: 127.0.0.1:0, blocking, close-on-exec, TCP_NODELAY, SO_RCVBUF set, backlog 7,
 *   and no SO_REUSEADDR (it must still read 0 after the restart).
 * - tcp6: [::1]:0, O_NONBLOCK, SO_REUSEADDR, SO_REUSEPORT, IPV6_V6ONLY (skipped where
 *   the host has no IPv6 loopback: the output says the same either way).
 * - unix: a path in DIR, SOCK_STREAM.
 * - abstract: an abstract name of its own, SOCK_SEQPACKET.
 * Each step checks every listener's address and options against what they were at
 * the start. A TCP connection is held open across each step line, so a checkpoint
 * finds one: after a restart it must read as reset (see hold()).
 *
 * usage: listen DIR [STEPS]     (default 12 steps of 50 ms)
 */
#include "feature.h"

#include <fcntl.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

enum { STEP_MS = 50, N = 4 };

struct listener {
  const char *name;
  int fd, family, type;
  struct sockaddr_storage addr;
  socklen_t len;
  int fl, fdfl;                /* F_GETFL & O_NONBLOCK, F_GETFD */
  int opts[6];                 /* NODELAY, REUSEADDR, REUSEPORT, V6ONLY, RCVBUF, ACCEPTCONN */
};

static int opt(int fd, int level, int name)
{
  int v = -1;
  socklen_t l = sizeof v;
  if (getsockopt(fd, level, name, &v, &l) != 0)
    return -1;
  return v;
}

static void snapshot(struct listener *l, int *opts, int *fl, int *fdfl)
{
  opts[0] = l->family == AF_UNIX ? 0 : opt(l->fd, IPPROTO_TCP, TCP_NODELAY);
  opts[1] = opt(l->fd, SOL_SOCKET, SO_REUSEADDR);
  opts[2] = opt(l->fd, SOL_SOCKET, SO_REUSEPORT);
  opts[3] = l->family == AF_INET6 ? opt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY) : 0;
  opts[4] = opt(l->fd, SOL_SOCKET, SO_RCVBUF);
  opts[5] = opt(l->fd, SOL_SOCKET, SO_ACCEPTCONN);
  *fl = fcntl(l->fd, F_GETFL) & O_NONBLOCK;
  *fdfl = fcntl(l->fd, F_GETFD);
}

static void set_int(int fd, int level, int name, int v)
{
  CHECK_SYS(setsockopt(fd, level, name, &v, sizeof v));
}

static void start(struct listener *l, int flags, int backlog)
{
  CHECK_SYS(l->fd = socket(l->family, l->type | flags, 0));
  if (!strcmp(l->name, "tcp4")) {
    set_int(l->fd, IPPROTO_TCP, TCP_NODELAY, 1);
    set_int(l->fd, SOL_SOCKET, SO_RCVBUF, 200000);
  } else if (!strcmp(l->name, "tcp6")) {
    set_int(l->fd, SOL_SOCKET, SO_REUSEADDR, 1);
    set_int(l->fd, SOL_SOCKET, SO_REUSEPORT, 1);
    set_int(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
  }
  CHECK(bind(l->fd, (struct sockaddr *)&l->addr, l->len) == 0, "bind %s: %s", l->name, strerror(errno));
  CHECK_SYS(listen(l->fd, backlog));
  l->len = sizeof l->addr;
  CHECK_SYS(getsockname(l->fd, (struct sockaddr *)&l->addr, &l->len));
  snapshot(l, l->opts, &l->fl, &l->fdfl);
}

static int retries;

static void retry(int c, int s)
{
  retries++;
  close(c);
  if (s >= 0)
    close(s);
}

/* One round trip through listener l; returns the bytes echoed. */
static size_t round_trip(struct listener *l, int step)
{
  struct sockaddr_storage now;
  socklen_t len = sizeof now;
  CHECK_SYS(getsockname(l->fd, (struct sockaddr *)&now, &len));
  CHECK(len == l->len && memcmp(&now, &l->addr, len) == 0, "step %d: %s is bound elsewhere now", step, l->name);
  int opts[6], fl, fdfl;
  snapshot(l, opts, &fl, &fdfl);
  CHECK(memcmp(opts, l->opts, sizeof opts) == 0,
        "step %d: %s options changed: nodelay %d/%d reuseaddr %d/%d reuseport %d/%d v6only %d/%d rcvbuf %d/%d "
        "acceptconn %d/%d", step, l->name, opts[0], l->opts[0], opts[1], l->opts[1], opts[2], l->opts[2],
        opts[3], l->opts[3], opts[4], l->opts[4], opts[5], l->opts[5]);
  CHECK(fl == l->fl && fdfl == l->fdfl, "step %d: %s flags changed", step, l->name);

  /* A checkpoint can come in the middle of a round trip: a connection of then comes
   * back reset (or, for a Unix one whose other end is gone, as /dev/null). That is a
   * failed attempt, seen without any timeout, and the round trip starts again. */
  for (;;) {
    int c;
    CHECK_SYS(c = socket(l->family, l->type | SOCK_CLOEXEC, 0));
    CHECK(connect(c, (struct sockaddr *)&l->addr, l->len) == 0, "step %d: connect to %s: %s", step, l->name,
          strerror(errno));
    char msg[64], got[64], echo[80];
    int n = snprintf(msg, sizeof msg, "%s step %d", l->name, step);
    if (send(c, msg, (size_t)n, MSG_NOSIGNAL) != n) {
      retry(c, -1);
      continue;
    }
    /* The connection waits to be accepted, unless a checkpoint lost it: then c says so. */
    struct pollfd p[2] = { { l->fd, POLLIN, 0 }, { c, POLLIN, 0 } };
    CHECK(poll(p, 2, 10000) > 0, "step %d: %s: neither accept nor the client became ready in 10 s", step, l->name);
    if (p[1].revents) {
      retry(c, -1);
      continue;
    }
    int s;
    CHECK_SYS(s = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC));
    ssize_t r = read(s, got, sizeof got);
    if (r <= 0) {
      retry(c, s);
      continue;
    }
    CHECK(r == n && memcmp(got, msg, (size_t)n) == 0, "step %d: %s server read %zd bytes", step, l->name, r);
    int e = snprintf(echo, sizeof echo, "echo %.*s", n, got);
    if (send(s, echo, (size_t)e, MSG_NOSIGNAL) != e) {
      retry(c, s);
      continue;
    }
    CHECK_SYS(close(s));
    r = read(c, got, sizeof got);
    if (r <= 0) {
      retry(c, -1);
      continue;
    }
    CHECK(r == e && memcmp(got, echo, (size_t)e) == 0, "step %d: %s client read %zd bytes", step, l->name, r);
    CHECK_SYS(close(c));
    return (size_t)e;
  }
}

/* A TCP connection held open across the step line, with a message in flight from the
 * client: a checkpoint taken now cannot save it, so after a restart both ends must
 * read as reset by the peer (ECONNRESET, then end of file), never as data from
 * nowhere or a silent end of file. Without a checkpoint the message arrives. */
static int held_c = -1, held_s = -1, resets;

static void hold(struct listener *l)
{
  /* As in round_trip: a checkpoint between connect and accept loses the connection
   * from the accept queue, and the client end, reset, says so. */
  for (;;) {
    CHECK_SYS(held_c = socket(l->family, l->type | SOCK_CLOEXEC, 0));
    CHECK_SYS(connect(held_c, (struct sockaddr *)&l->addr, l->len));
    struct pollfd p[2] = { { l->fd, POLLIN, 0 }, { held_c, POLLIN, 0 } };
    CHECK(poll(p, 2, 10000) > 0, "%s: neither accept nor the held client became ready in 10 s", l->name);
    if (p[1].revents) {
      retry(held_c, -1);
      continue;
    }
    CHECK_SYS(held_s = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC));
    if (send(held_c, "held", 4, MSG_NOSIGNAL) != 4) {
      retry(held_c, held_s);
      continue;
    }
    return;
  }
}

static void release(int step)
{
  char got[8];
  ssize_t r = read(held_s, got, sizeof got);
  if (r < 0) {
    CHECK(errno == ECONNRESET, "step %d: a held connection read %s, want ECONNRESET", step, strerror(errno));
    CHECK(read(held_s, got, sizeof got) == 0, "step %d: a reset connection did not end", step);
    r = read(held_c, got, sizeof got);
    CHECK(r < 0 && errno == ECONNRESET, "step %d: the held connection's client end read %zd (%s), want ECONNRESET",
          step, r, r < 0 ? strerror(errno) : "no error");
    resets++;
  } else {
    CHECK(r == 4 && memcmp(got, "held", 4) == 0, "step %d: a held connection read %zd bytes", step, r);
  }
  CHECK_SYS(close(held_c));
  CHECK_SYS(close(held_s));
}

int main(int argc, char **argv)
{
  CHECK(argc >= 2, "usage: listen DIR [STEPS]");
  int steps = argc > 2 ? parse_int(argv[2]) : 12;
  struct listener ls[N];
  memset(ls, 0, sizeof ls);

  ls[0] = (struct listener){ .name = "tcp4", .family = AF_INET, .type = SOCK_STREAM };
  struct sockaddr_in *in = (struct sockaddr_in *)&ls[0].addr;
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ls[0].len = sizeof *in;
  start(&ls[0], SOCK_CLOEXEC, 7);

  int n = 1;
  ls[n] = (struct listener){ .name = "tcp6", .family = AF_INET6, .type = SOCK_STREAM };
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ls[n].addr;
  in6->sin6_family = AF_INET6;
  in6->sin6_addr = in6addr_loopback;
  ls[n].len = sizeof *in6;
  int probe = socket(AF_INET6, SOCK_STREAM, 0);
  if (probe >= 0 && bind(probe, (struct sockaddr *)in6, sizeof *in6) == 0) {
    start(&ls[n], SOCK_NONBLOCK, 16);
    n++;
  }
  if (probe >= 0)
    close(probe);

  ls[n] = (struct listener){ .name = "unix", .family = AF_UNIX, .type = SOCK_STREAM };
  struct sockaddr_un *un = (struct sockaddr_un *)&ls[n].addr;
  un->sun_family = AF_UNIX;
  CHECK((size_t)snprintf(un->sun_path, sizeof un->sun_path, "%s/listen.sock", argv[1]) < sizeof un->sun_path,
        "DIR is too long for a socket path");
  ls[n].len = sizeof *un;
  start(&ls[n], 0, 5);
  n++;

  ls[n] = (struct listener){ .name = "abstract", .family = AF_UNIX, .type = SOCK_SEQPACKET };
  un = (struct sockaddr_un *)&ls[n].addr;
  un->sun_family = AF_UNIX;
  int l = snprintf(un->sun_path + 1, sizeof un->sun_path - 1, "mig-feature-listen-%d-%ld", (int)getpid(),
                   (long)(mono_ns() % 1000000007));
  ls[n].len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)l);
  start(&ls[n], SOCK_CLOEXEC, 3);
  n++;

  printf("listen: %d steps\n", steps);
  size_t bytes = 0;
  for (int s = 1; s <= steps; s++) {
    for (int i = 0; i < n; i++)
      bytes += round_trip(&ls[i], s);
    hold(&ls[s % 2 == 0 && n == 4 ? 1 : 0]);
    feature_step(s);
    sleep_ms(STEP_MS);
    release(s);
  }
  CHECK(ls[0].opts[1] == 0, "tcp4 has SO_REUSEADDR set");
  printf("every listener echoed every step\n");
  fprintf(stderr, "listen: %d round trips started again after a checkpoint cut them, %d held connections reset\n",
          retries, resets);
  printf("PASS\n");
  (void)bytes;
  return 0;
}
