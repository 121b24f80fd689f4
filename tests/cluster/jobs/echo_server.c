/* echo_server.c: the job of the server checks (loopback_migration.sh, tcp_server.sh). A plain blocking TCP
 * server: listens on ADDR (default 127.0.0.1; a free port, printed as "port N"), and serves
 * CLIENTS clients one after the other, answering each line with "echo LINE", until
 * the client closes; then exits 0. For each client it prints the peer's address and
 * the local port (accept's address, getsockname). Its listening socket and
 * connections stay at home when it migrates.
 *
 * usage: echo_server CLIENTS [ADDR] */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2 && argc != 3) {
    fprintf(stderr, "usage: echo_server CLIENTS [ADDR]\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (argc == 3 && inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) {
    fprintf(stderr, "echo_server: not an IPv4 address: %s\n", argv[2]);
    return 2;
  }
  socklen_t len = sizeof a;
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 8) != 0 ||
      getsockname(l, (struct sockaddr *)&a, &len) != 0) {
    perror("listen");
    return 1;
  }
  printf("port %d\n", ntohs(a.sin_port));
  for (int served = 0; served < atoi(argv[1]); ++served) {
    struct sockaddr_in peer, self;
    socklen_t plen = sizeof peer, slen = sizeof self;
    int c = accept(l, (struct sockaddr *)&peer, &plen);
    if (c < 0 || getsockname(c, (struct sockaddr *)&self, &slen) != 0) {
      perror("accept");
      return 1;
    }
    printf("client %d from %s, to port %d\n", served + 1, plen == sizeof peer ? inet_ntoa(peer.sin_addr) : "?",
           ntohs(self.sin_port));
    FILE *in = fdopen(c, "r");
    char line[512];
    while (fgets(line, sizeof line, in) != NULL) {
      char out[600];
      int n = snprintf(out, sizeof out, "echo %s", line);
      if (write(c, out, (size_t)n) != n) {
        perror("write");
        return 1;
      }
    }
    fclose(in);
    printf("served client %d\n", served + 1);
  }
  return 0;
}
