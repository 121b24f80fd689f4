/* family_job.c: the job of the loopback test's process-family check. It forks a
 * child at home, waits until the file GO exists (the test migrates it first), then,
 * away from home: kills and reaps the child it left at home (its SIGCHLD must reach
 * it too), forks a child here and reaps it, and starts one with posix_spawn and
 * reaps it. Prints what each call returned; the child born away reports its own
 * getpid() and getppid() through a pipe, and says hello on stdout (a file at home),
 * as does the program posix_spawn starts. At the end the job execs a shell, which
 * says its PID on stdout too.
 *
 * usage: family_job GO */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t sigchld_seen;
static void on_sigchld(int sig) { (void)sig; sigchld_seen = 1; }

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&t, NULL);
}

static void describe(const char *what, pid_t pid, int status) {
  if (pid < 0) printf("%s: waitpid failed: %s\n", what, strerror(errno));
  else if (WIFEXITED(status)) printf("%s %d reaped: exit %d\n", what, pid, WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) printf("%s %d reaped: signal %d\n", what, pid, WTERMSIG(status));
  else printf("%s %d reaped: status %#x\n", what, pid, status);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: family_job GO\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  pid_t home = fork();
  if (home == 0) {
    for (;;) pause();
  }
  printf("pid %d home child %d\n", getpid(), home);
  while (access(argv[1], F_OK) != 0) sleep_ms(20);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigchld;
  sigaction(SIGCHLD, &sa, NULL);
  printf("kill home child: %d\n", kill(home, SIGTERM));
  int status = 0;
  pid_t got = waitpid(home, &status, 0);
  describe("home child", got, status);
  for (int i = 0; i < 250 && !sigchld_seen; ++i) sleep_ms(20);
  printf("SIGCHLD from the home child: %s\n", sigchld_seen ? "yes" : "no");

  int p[2];
  if (pipe(p) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    char line[64];
    int n = snprintf(line, sizeof line, "%d %d", getpid(), getppid());
    if (write(p[1], line, (size_t)n) != n) _exit(1);
    printf("child born away says hello\n");
    _exit(5);
  }
  close(p[1]);
  char line[64] = {0};
  ssize_t n = read(p[0], line, sizeof line - 1);
  int child_pid = 0, child_ppid = 0;
  if (n > 0) sscanf(line, "%d %d", &child_pid, &child_ppid);
  printf("forked %d: it says getpid %d getppid %d\n", child, child_pid, child_ppid);
  got = waitpid(child, &status, 0);
  describe("child", got, status);

  pid_t spawned;
  char *args[] = {"echo", "spawned echo says hello", NULL};
  if (posix_spawn(&spawned, "/bin/echo", NULL, NULL, args, environ) != 0) return 1;
  got = waitpid(-1, &status, 0);
  printf("spawned %d, above pid_max: %s\n", spawned, spawned > 4194304 ? "yes" : "no");
  describe("spawned", got, status);
  printf("no more children: %s\n", waitpid(-1, &status, WNOHANG) == -1 ? "yes" : "no");
  execl("/bin/sh", "sh", "-c", "echo \"exec'd shell, pid $$\"", (char *)NULL);
  printf("exec failed: %s\n", strerror(errno));
  return 1;
}
