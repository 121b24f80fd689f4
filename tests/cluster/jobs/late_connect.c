/* late_connect.c: a job that opens a TCP connection only after it was migrated (the
 * test creates TRIGGER once the migration is done), to show where sockets made away
 * from home live: at home by default (the peer sees home's address), on the new host
 * with `migctl migrate --local-net`. Prints "pid N" at start, then "from ADDR:PORT"
 * (its end of the connection, getsockname) and "reply LINE" (the peer's first line).
 *
 * usage: late_connect TRIGGER ADDR PORT */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: late_connect TRIGGER ADDR PORT\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("pid %d\n", getpid());
  struct timespec tick = {0, 50 * 1000 * 1000};
  int waited = 0;
  while (access(argv[1], F_OK) != 0) {
    if (++waited > 1200) { /* 60 s */
      fprintf(stderr, "late_connect: %s never appeared\n", argv[1]);
      return 1;
    }
    nanosleep(&tick, NULL);
  }
  struct sockaddr_in to, self;
  memset(&to, 0, sizeof to);
  to.sin_family = AF_INET;
  to.sin_port = htons((unsigned short)atoi(argv[3]));
  if (inet_pton(AF_INET, argv[2], &to.sin_addr) != 1) {
    fprintf(stderr, "late_connect: not an IPv4 address: %s\n", argv[2]);
    return 2;
  }
  socklen_t len = sizeof self;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0 || connect(s, (struct sockaddr *)&to, sizeof to) != 0 ||
      getsockname(s, (struct sockaddr *)&self, &len) != 0) {
    perror("late_connect: connect");
    return 1;
  }
  printf("from %s:%d\n", inet_ntoa(self.sin_addr), ntohs(self.sin_port));
  const char hello[] = "hello from late_connect\n";
  if (write(s, hello, sizeof hello - 1) != (ssize_t)(sizeof hello - 1)) {
    perror("late_connect: write");
    return 1;
  }
  char line[256];
  FILE *in = fdopen(s, "r");
  if (in == NULL || fgets(line, sizeof line, in) == NULL) {
    fprintf(stderr, "late_connect: no reply\n");
    return 1;
  }
  printf("reply %s", line);
  return 0;
}
