/* tree_spawn: what make does. The root starts three children with posix_spawn
 * (clone3/vfork in glibc) and polls them with wait4(-1, WNOHANG) every step: none
 * has ended. At the end it closes their pipe; they exit 10, 11 and 12 and the root
 * reaps all three with wait4(-1), each PID one it spawned, with its status. */
#include "feature.h"

#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv)
{
  if (argc == 3 && strcmp(argv[1], "child") == 0) {
    char c;
    while (read(0, &c, 1) > 0) {}
    return 10 + atoi(argv[2]);
  }
  int stop[2];
  CHECK_SYS(pipe(stop));
  pid_t kids[3];
  for (int i = 0; i < 3; i++) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, stop[0], 0);
    posix_spawn_file_actions_addclose(&fa, stop[1]);
    char n[2] = {(char)('0' + i), 0};
    char *args[] = {argv[0], "child", n, NULL};
    int e = posix_spawn(&kids[i], "/proc/self/exe", &fa, NULL, args, environ);
    CHECK(e == 0, "posix_spawn: %s", strerror(e));
    posix_spawn_file_actions_destroy(&fa);
  }
  close(stop[0]);
  for (int step = 1; step <= 30; step++) {
    int st;
    struct rusage ru;
    pid_t got = wait4(-1, &st, WNOHANG, &ru);
    CHECK(got == 0, "step %d: wait4(-1, WNOHANG) = %d (%s)", step, got, got < 0 ? strerror(errno) : "a child ended");
    sleep_ms(50);
    feature_step(step);
  }
  close(stop[1]);
  int seen = 0;
  for (int i = 0; i < 3; i++) {
    int st;
    struct rusage ru;
    pid_t got = wait4(-1, &st, 0, &ru);
    CHECK(got > 0, "wait4(-1): %s", strerror(errno));
    int k = -1;
    for (int j = 0; j < 3; j++) if (kids[j] == got) k = j;
    CHECK(k >= 0, "wait4 returned %d, not a spawned child", got);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 10 + k, "child %d: status %#x", k, st);
    seen |= 1 << k;
  }
  CHECK(seen == 7, "children reaped: %#x", seen);
  CHECK(wait4(-1, NULL, WNOHANG, NULL) == -1 && errno == ECHILD, "a child left over");
  puts("3 spawned children reaped with status 10, 11, 12");
  puts("PASS");
  return 0;
}
