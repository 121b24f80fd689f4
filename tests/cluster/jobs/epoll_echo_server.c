/* epoll_echo_server.c: the job of the readiness checks. An event-loop TCP echo
 * server written the way real servers (redis, nginx, libuv/libevent programs) are:
 * the listening socket (O_NONBLOCK through fcntl, as redis's anetNonBlock does) and
 * every connection (accept4 with SOCK_NONBLOCK, as nginx does) are non-blocking, and
 * one epoll instance says which of them is ready. A migrated job's sockets stay at
 * home; this server only works after a migration if poll/epoll on their local
 * stand-ins report the readiness of the sockets at home.
 *
 * Level-triggered by default: one read per readiness report (what is left is
 * reported again). With --et the registrations are edge-triggered (EPOLLET) and
 * every read loops until EAGAIN, as an edge-triggered server must (a report it does
 * not drain is not repeated). Accepts always loop until EAGAIN.
 *
 * Listens on ADDR (default 127.0.0.1) on a free port and prints "port N". Accepts
 * every pending client (accept4 until EAGAIN) and prints "client K from IP" for
 * each. Keeps a read buffer per connection and answers each complete line "LINE\n"
 * with "echo LINE\n" (a partial line waits for the rest); what the socket does not
 * take at once waits in the connection's output buffer, sent when epoll reports
 * EPOLLOUT (and the connection is not read while 1 MiB waits there). On EOF it sends
 * what is left, closes the connection and prints "closed K". After CLIENTS clients
 * have been closed it exits: 0, or 1 if any connection ended in an error (printed as
 * "closed K after error: ...").
 *
 * usage: epoll_echo_server [--et] CLIENTS [ADDR] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kInCap = 64 * 1024, kOutHigh = 1024 * 1024, kMaxEvents = 64 };

struct conn {
  int fd;
  int id;           /* K of "client K" */
  char in[kInCap];  /* bytes read, not yet a complete line */
  size_t inLen;
  char *out;        /* echoes not yet taken by the socket */
  size_t outLen, outCap;
  bool eof;         /* the client closed its side: send what is left, then close */
  unsigned events;  /* what the connection is registered for now */
};

static int ep;
static bool edge;
static int closed, failed;

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* Registers (or re-registers) c for reading unless it is at EOF or its output
 * buffer is over the high mark, and for writing while output waits. */
static void arm(struct conn *c) {
  unsigned want = 0;
  if (!c->eof && c->outLen < kOutHigh) want |= EPOLLIN | EPOLLRDHUP;
  if (c->outLen > 0) want |= EPOLLOUT;
  if (edge) want |= EPOLLET;
  if (want == c->events) return;
  struct epoll_event ev = {.events = want, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) die("epoll_ctl MOD");
  c->events = want;
}

static void finish(struct conn *c, const char *error) {
  if (epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL) != 0) die("epoll_ctl DEL");
  if (close(c->fd) != 0) die("close");
  if (error != NULL) {
    printf("closed %d after error: %s\n", c->id, error);
    ++failed;
  } else {
    printf("closed %d\n", c->id);
  }
  ++closed;
  free(c->out);
  free(c);
}

static void queue(struct conn *c, const char *line, size_t n) {
  size_t need = c->outLen + 5 + n + 1;
  if (need > c->outCap) {
    size_t cap = c->outCap ? c->outCap : 4096;
    while (cap < need) cap *= 2;
    if ((c->out = realloc(c->out, cap)) == NULL) die("realloc");
    c->outCap = cap;
  }
  memcpy(c->out + c->outLen, "echo ", 5);
  memcpy(c->out + c->outLen + 5, line, n);
  c->out[c->outLen + 5 + n] = '\n';
  c->outLen = need;
}

/* Writes what the socket takes now. Returns false if the connection failed. */
static bool flush(struct conn *c) {
  size_t done = 0;
  while (done < c->outLen) {
    ssize_t n = write(c->fd, c->out + done, c->outLen - done);
    if (n > 0) {
      done += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      finish(c, n == 0 ? "write returned 0" : strerror(errno));
      return false;
    }
  }
  memmove(c->out, c->out + done, c->outLen - done);
  c->outLen -= done;
  return true;
}

/* Answers every complete line in c->in. */
static void answer(struct conn *c) {
  size_t start = 0;
  for (;;) {
    char *nl = memchr(c->in + start, '\n', c->inLen - start);
    if (nl == NULL) break;
    size_t n = (size_t)(nl - (c->in + start));
    queue(c, c->in + start, n);
    start += n + 1;
  }
  memmove(c->in, c->in + start, c->inLen - start);
  c->inLen -= start;
}

/* Reads once (level-triggered) or until EAGAIN (edge-triggered). Returns false if
 * the connection is gone. */
static bool readable(struct conn *c) {
  for (;;) {
    if (c->outLen >= kOutHigh) return true; /* wait for the client to read its echoes */
    if (c->inLen == kInCap) {
      finish(c, "line longer than 64 KiB");
      return false;
    }
    ssize_t n = read(c->fd, c->in + c->inLen, kInCap - c->inLen);
    if (n > 0) {
      c->inLen += (size_t)n;
      answer(c);
      if (!edge) return true;
    } else if (n == 0) {
      c->eof = true;
      return true;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return true;
    } else {
      finish(c, strerror(errno));
      return false;
    }
  }
}

static void accept_all(int l, int *accepted) {
  for (;;) {
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    int fd = accept4(l, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      die("accept4");
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) die("calloc");
    c->fd = fd;
    c->id = ++*accepted;
    c->events = EPOLLIN | EPOLLRDHUP | (edge ? EPOLLET : 0);
    struct epoll_event ev = {.events = c->events, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl ADD");
    char ip[INET_ADDRSTRLEN] = "?";
    if (plen == sizeof peer) inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
    printf("client %d from %s\n", c->id, ip);
  }
}

int main(int argc, char **argv) {
  int arg = 1;
  if (arg < argc && strcmp(argv[arg], "--et") == 0) {
    edge = true;
    ++arg;
  }
  if (argc - arg != 1 && argc - arg != 2) {
    fprintf(stderr, "usage: epoll_echo_server [--et] CLIENTS [ADDR]\n");
    return 2;
  }
  int clients = atoi(argv[arg]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an EPIPE, as in real servers */

  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (argc - arg == 2 && inet_pton(AF_INET, argv[arg + 1], &a.sin_addr) != 1) {
    fprintf(stderr, "epoll_echo_server: not an IPv4 address: %s\n", argv[arg + 1]);
    return 2;
  }
  int l = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  socklen_t len = sizeof a;
  if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 128) != 0 ||
      getsockname(l, (struct sockaddr *)&a, &len) != 0)
    die("listen");
  int flags = fcntl(l, F_GETFL);
  if (flags < 0 || fcntl(l, F_SETFL, flags | O_NONBLOCK) != 0) die("fcntl O_NONBLOCK");

  if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0) die("epoll_create1");
  struct epoll_event lev = {.events = EPOLLIN | (edge ? EPOLLET : 0), .data.ptr = NULL};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, l, &lev) != 0) die("epoll_ctl ADD listener");
  printf("port %d\n", ntohs(a.sin_port));

  int accepted = 0;
  while (closed < clients) {
    struct epoll_event evs[kMaxEvents];
    int n = epoll_wait(ep, evs, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      struct conn *c = evs[i].data.ptr;
      if (c == NULL) {
        accept_all(l, &accepted);
        continue;
      }
      unsigned e = evs[i].events;
      /* An error or hang-up shows in the read (ECONNRESET, or EOF after the data). */
      if ((e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !c->eof && !readable(c)) continue;
      if (c->outLen > 0 && !flush(c)) continue;
      if (c->eof && c->outLen == 0) {
        finish(c, NULL);
        continue;
      }
      if ((e & (EPOLLHUP | EPOLLERR)) && c->eof) {
        /* the client is gone and cannot take the rest */
        finish(c, "hang-up with echoes unsent");
        continue;
      }
      arm(c);
    }
  }
  close(ep);
  close(l);
  return failed ? 1 : 0;
}
