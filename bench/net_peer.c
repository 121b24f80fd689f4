/* Benchmark subject and client: TCP over loopback, through the relay or direct
   (bench/network_relay_bench.sh).

   net_peer serve [BUF]
     A plain blocking TCP server: listens on 127.0.0.1 (a free port, printed as
     "port N" on stdout) and serves clients one after the other, until killed. The
     client's first byte picks the mode:
       'p'  ping-pong: reads 64-byte messages and writes each one back, until EOF;
       's'  sink: reads until EOF, then writes back the byte count (8 bytes, little
            endian) and closes;
       'r'  source: reads an 8-byte count N (little endian), writes N bytes, closes.
     Reads and writes use BUF-byte buffers (default 1 MiB).

   net_peer ping PORT COUNT     COUNT round trips of a 64-byte message (after 100
                                 unmeasured ones); prints "RESULT <median ns> <p10 ns> <p90 ns>"
   net_peer send PORT MIB        sends MIB MiB into the sink (1 MiB writes), waits for
                                 the count; prints "RESULT <MB/s>"
   net_peer recv PORT MIB        asks the source for MIB MiB; prints "RESULT <MB/s>"

   The clients give up (exit 1) when the server is silent for 60 s. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { kMsg = 64, kWarmup = 100 };

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* read exactly n bytes; returns n, 0 at EOF before the first byte, -1 on error or a
   short EOF */
static ssize_t read_full(int fd, void* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char*)buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) return got == 0 ? 0 : -1;
    got += (size_t)r;
  }
  return (ssize_t)n;
}

static int write_full(int fd, const void* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(fd, (const char*)buf + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    done += (size_t)w;
  }
  return 0;
}

static void put64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void serve_client(int c, char* buf, size_t bufsize) {
  char mode;
  if (read_full(c, &mode, 1) != 1) return;
  if (mode == 'p') {
    for (;;) {
      ssize_t r = read_full(c, buf, kMsg);
      if (r <= 0) {
        if (r < 0) perror("net_peer: ping read");
        return;
      }
      if (write_full(c, buf, kMsg) != 0) {
        perror("net_peer: ping write");
        return;
      }
    }
  } else if (mode == 's') {
    uint64_t total = 0;
    for (;;) {
      ssize_t r = read(c, buf, bufsize);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        perror("net_peer: sink read");
        return;
      }
      if (r == 0) break;
      total += (uint64_t)r;
    }
    unsigned char out[8];
    put64(out, total);
    if (write_full(c, out, 8) != 0) perror("net_peer: sink write");
  } else if (mode == 'r') {
    unsigned char in[8];
    if (read_full(c, in, 8) != 8) {
      fprintf(stderr, "net_peer: source: no count\n");
      return;
    }
    uint64_t left = get64(in);
    memset(buf, 'r', bufsize);
    while (left > 0) {
      size_t n = left < bufsize ? (size_t)left : bufsize;
      if (write_full(c, buf, n) != 0) {
        perror("net_peer: source write");
        return;
      }
      left -= n;
    }
  } else {
    fprintf(stderr, "net_peer: unknown mode %d\n", mode);
  }
}

static int serve(size_t bufsize) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  char* buf = malloc(bufsize);
  if (buf == NULL) return 1;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (l < 0 || bind(l, (struct sockaddr*)&a, sizeof a) != 0 || listen(l, 8) != 0 ||
      getsockname(l, (struct sockaddr*)&a, &len) != 0) {
    perror("net_peer: listen");
    return 1;
  }
  printf("port %d\n", ntohs(a.sin_port));
  for (;;) {
    int c = accept(l, NULL, NULL);
    if (c < 0 && errno == EINTR) continue;
    if (c < 0) {
      perror("net_peer: accept");
      return 1;
    }
    serve_client(c, buf, bufsize);
    close(c);
    printf("served\n");
  }
}

static int dial(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  struct timeval tv = {60, 0};
  int one = 1;
  if (s < 0 || setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
      setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
      setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
      connect(s, (struct sockaddr*)&a, sizeof a) != 0) {
    perror("net_peer: connect");
    exit(1);
  }
  return s;
}

static int cmp(const void* x, const void* y) {
  double a = *(const double*)x, b = *(const double*)y;
  return (a > b) - (a < b);
}

static int ping(int port, long count) {
  if (count <= 0) return 2;
  int s = dial(port);
  double* rtt = malloc(sizeof(double) * (size_t)count);
  char msg[kMsg], back[kMsg];
  if (rtt == NULL) return 1;
  memset(msg, 'p', sizeof msg);
  if (write_full(s, "p", 1) != 0) goto fail;
  for (long i = -kWarmup; i < count; i++) {
    double t = now();
    if (write_full(s, msg, kMsg) != 0 || read_full(s, back, kMsg) != kMsg) goto fail;
    if (i >= 0) rtt[i] = now() - t;
  }
  close(s);
  qsort(rtt, (size_t)count, sizeof(double), cmp);
  printf("RESULT %.0f %.0f %.0f\n", rtt[count / 2] * 1e9, rtt[count / 10] * 1e9, rtt[count * 9 / 10] * 1e9);
  return 0;
fail:
  perror("net_peer: ping");
  return 1;
}

static int send_sink(int port, long mib) {
  if (mib <= 0) return 2;
  size_t chunk = 1 << 20;
  char* buf = malloc(chunk);
  if (buf == NULL) return 1;
  memset(buf, 's', chunk);
  int s = dial(port);
  double t = now();
  if (write_full(s, "s", 1) != 0) goto fail;
  for (long i = 0; i < mib; i++)
    if (write_full(s, buf, chunk) != 0) goto fail;
  shutdown(s, SHUT_WR);
  unsigned char in[8];
  if (read_full(s, in, 8) != 8) goto fail;
  double secs = now() - t;
  uint64_t want = (uint64_t)mib << 20;
  if (get64(in) != want) {
    fprintf(stderr, "net_peer: the sink counted %llu bytes, not %llu\n", (unsigned long long)get64(in),
            (unsigned long long)want);
    return 1;
  }
  printf("RESULT %.1f\n", (double)want / secs / 1e6);
  return 0;
fail:
  perror("net_peer: send");
  return 1;
}

static int recv_source(int port, long mib) {
  if (mib <= 0) return 2;
  size_t chunk = 1 << 20;
  char* buf = malloc(chunk);
  if (buf == NULL) return 1;
  int s = dial(port);
  uint64_t want = (uint64_t)mib << 20, got = 0;
  unsigned char req[9];
  req[0] = 'r';
  put64(req + 1, want);
  double t = now();
  if (write_full(s, req, sizeof req) != 0) goto fail;
  for (;;) {
    ssize_t r = read(s, buf, chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) goto fail;
    if (r == 0) break;
    got += (uint64_t)r;
  }
  double secs = now() - t;
  if (got != want) {
    fprintf(stderr, "net_peer: received %llu bytes, not %llu\n", (unsigned long long)got, (unsigned long long)want);
    return 1;
  }
  printf("RESULT %.1f\n", (double)want / secs / 1e6);
  return 0;
fail:
  perror("net_peer: recv");
  return 1;
}

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "serve") == 0 && argc <= 3)
    return serve(argc == 3 ? strtoul(argv[2], NULL, 10) : 1 << 20);
  if (argc == 4 && strcmp(argv[1], "ping") == 0) return ping(atoi(argv[2]), atol(argv[3]));
  if (argc == 4 && strcmp(argv[1], "send") == 0) return send_sink(atoi(argv[2]), atol(argv[3]));
  if (argc == 4 && strcmp(argv[1], "recv") == 0) return recv_source(atoi(argv[2]), atol(argv[3]));
  fprintf(stderr,
          "usage: net_peer serve [BUF] | net_peer ping PORT COUNT | net_peer send PORT MIB |"
          " net_peer recv PORT MIB\n");
  return 2;
}
