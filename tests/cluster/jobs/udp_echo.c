/* udp_echo.c: the job of the loopback test's UDP check. Binds a UDP socket on
 * 127.0.0.1 (a free port, printed as "port N") and sends every datagram back to
 * where it came from, as it came (boundaries kept), until one says "quit"; prints
 * how many it echoed and exits 0. Its socket stays at home when it migrates.
 *
 * usage: udp_echo */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(s, (struct sockaddr *)&a, &len) != 0) {
    perror("bind");
    return 1;
  }
  printf("port %d\n", ntohs(a.sin_port));
  static char buf[65536];
  for (int echoed = 0;; ++echoed) {
    struct sockaddr_in from;
    socklen_t flen = sizeof from;
    ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
    if (n < 0) {
      perror("recvfrom");
      return 1;
    }
    if (n == 4 && memcmp(buf, "quit", 4) == 0) {
      printf("echoed %d datagrams\n", echoed);
      return 0;
    }
    if (sendto(s, buf, (size_t)n, 0, (struct sockaddr *)&from, flen) != n) {
      perror("sendto");
      return 1;
    }
  }
}
