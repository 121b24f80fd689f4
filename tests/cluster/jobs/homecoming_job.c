/* homecoming_job.c: the job of tests/cluster/homecoming.sh. Opens FILE (a file at
 * home) and connects to an echo server at home on 127.0.0.1:PORT before it is ever
 * moved, then for STEPS steps: appends "line N" to FILE with write(2), sends
 * "ping N" on the connection and reads the echo back (a blocking read, often in
 * flight at home when a hop freezes the job), prints "step N pid P" to stdout and
 * sleeps 50 ms. A wrong or missing echo ends it with status 3; a whole run ends with
 * status 7 and the line "done". With FORKFILE: while that file exists it has one child
 * ("child forked"), which ends once the file is gone and is then reaped ("child reaped").
 * With ENDFILE: once that file exists, the step under way is its last: it ends as a
 * whole run does (so that a test need not wait for STEPS steps once it has checked
 * what it wanted to while the job runs).
 *
 * usage: homecoming_job STEPS FILE PORT [FORKFILE [ENDFILE]] */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int readLine(int s, char *buf, size_t cap) {
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t r = read(s, buf + n, 1);
    if (r <= 0) return -1;
    if (buf[n++] == '\n') break;
  }
  buf[n] = '\0';
  return (int)n;
}

int main(int argc, char **argv) {
  if (argc < 4 || argc > 6) {
    fprintf(stderr, "usage: homecoming_job STEPS FILE PORT [FORKFILE [ENDFILE]]\n");
    return 2;
  }
  int steps = atoi(argv[1]);
  int out = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)atoi(argv[3]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (out < 0 || s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("homecoming_job: setup");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *forkFile = argc >= 5 ? argv[4] : NULL;
  const char *endFile = argc == 6 ? argv[5] : NULL;
  pid_t child = 0;
  for (int i = 1; i <= steps; ++i) {
    if (forkFile != NULL && child == 0 && access(forkFile, F_OK) == 0) {
      child = fork();
      if (child == 0) {
        struct timespec tick = {0, 20 * 1000 * 1000};
        while (access(forkFile, F_OK) == 0) nanosleep(&tick, NULL);
        _exit(0);
      }
      printf("child forked\n");
    }
    if (child > 0 && waitpid(child, NULL, WNOHANG) == child) {
      child = 0;
      printf("child reaped\n");
    }
    char line[64], want[64], got[64];
    int n = snprintf(line, sizeof line, "line %d\n", i);
    if (write(out, line, (size_t)n) != n) return 4;
    n = snprintf(want, sizeof want, "ping %d\n", i);
    if (send(s, want, (size_t)n, 0) != n) return 3;
    if (readLine(s, got, sizeof got) < 0 || strcmp(got, want) != 0) {
      fprintf(stderr, "homecoming_job: step %d: echo '%s'\n", i, got);
      return 3;
    }
    printf("step %d pid %d\n", i, (int)getpid());
    if (endFile != NULL && access(endFile, F_OK) == 0) break;
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  printf("done\n");
  return 7;
}
