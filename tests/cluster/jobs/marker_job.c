/* marker_job.c: the job of link_encryption.sh. Sends a marker string home every way a
 * migrated job does: it keeps the marker in its memory (so the image carries it),
 * and at every step appends "MARKER STEP" to a file and sends the same line over a
 * TCP connection, both opened at home before the hop. Prints "STEP n" (flushed) after
 * each step of 50 ms, and "SIGUSR1 k" after the step in which it got its k-th SIGUSR1
 * (direct_link.sh sends one from home); stops after the step at which DIR/stop exists (made by the
 * test), or after 2400 steps (2 minutes), prints "done N" and exits 0.
 *
 * usage: marker_job DIR PORT MARKER    (PORT: a TCP server on 127.0.0.1 at home) */
#include "feature.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

enum { STEP_MS = 50, MAX_STEPS = 2400 };

static volatile sig_atomic_t usr1;
static void on_usr1(int sig) {
  (void)sig;
  ++usr1;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: marker_job DIR PORT MARKER\n");
    return 2;
  }
  /* A copy on the heap: the image holds it in the job's own memory too. */
  char *marker = strdup(argv[3]);
  char file[4096], stop[4096];
  snprintf(file, sizeof file, "%s/marker.txt", argv[1]);
  snprintf(stop, sizeof stop, "%s/stop", argv[1]);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
  int told = 0;
  int fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  CHECK_SYS(fd);
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK_SYS(s);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)atoi(argv[2]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK_SYS(connect(s, (struct sockaddr *)&a, sizeof a));
  int n = 0;
  for (;;) {
    ++n;
    char line[512];
    int len = snprintf(line, sizeof line, "%s %d\n", marker, n);
    CHECK(write(fd, line, (size_t)len) == len, "write to %s: %s", file, strerror(errno));
    CHECK(send(s, line, (size_t)len, MSG_NOSIGNAL) == len, "send: %s", strerror(errno));
    printf("STEP %d\n", n);
    while (told < usr1) printf("SIGUSR1 %d\n", ++told);
    fflush(stdout);
    struct stat st;
    if (stat(stop, &st) == 0 || n >= MAX_STEPS) break;
    struct timespec ts = {0, STEP_MS * 1000000L};
    nanosleep(&ts, NULL);
  }
  CHECK_SYS(close(s));
  CHECK_SYS(close(fd));
  printf("done %d\n", n);
  return 0;
}
