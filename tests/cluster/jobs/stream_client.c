/* stream_client.c: the job of the TCP stream checks (loopback_migration.sh,
 * network_stream.sh). Connects to
 * ADDR:PORT, streams MIB MiB of deterministic bytes in 64 KiB send(2)s
 * (pausing 20 ms after each MiB, so that migrations land mid-stream), shuts its
 * side down, reads the sink's one-line answer (its byte count and SHA-256) and
 * prints it beside the count it sent. Progress ("at MiB M") goes to stderr.
 *
 * usage: stream_client PORT MIB [ADDR]     (ADDR: the sink's IPv4 address, default 127.0.0.1) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: stream_client PORT MIB [ADDR]\n");
    return 2;
  }
  int mib = atoi(argv[2]);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)atoi(argv[1]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (argc == 4 && inet_pton(AF_INET, argv[3], &a.sin_addr) != 1) {
    fprintf(stderr, "stream_client: not an IPv4 address: %s\n", argv[3]);
    return 2;
  }
  if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("connect");
    return 1;
  }
  static unsigned char buf[65536];
  uint64_t x = 0x9e3779b97f4a7c15ull, sent = 0;
  for (int m = 0; m < mib; ++m) {
    for (int k = 0; k < 16; ++k) {
      for (size_t i = 0; i < sizeof buf; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(buf + i, &x, 8);
      }
      for (size_t off = 0; off < sizeof buf;) {
        ssize_t n = send(s, buf + off, sizeof buf - off, 0);
        if (n <= 0) {
          perror("send");
          return 1;
        }
        off += (size_t)n;
        sent += (uint64_t)n;
      }
    }
    if (m % 10 == 0) fprintf(stderr, "at MiB %d\n", m);
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  if (shutdown(s, SHUT_WR) != 0) {
    perror("shutdown");
    return 1;
  }
  char answer[256] = {0};
  ssize_t n = recv(s, answer, sizeof answer - 1, 0);
  printf("sent %llu bytes; the sink says: %s", (unsigned long long)sent, n > 0 ? answer : "nothing\n");
  return 0;
}
