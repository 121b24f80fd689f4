/* tree_zombie: two children end at once, one with exit status 7, one killed by
 * SIGUSR1, and stay zombies until the end: each step the root sees both ended
 * without reaping them (waitid WNOWAIT, by PID), and a third child, alive, sleeps.
 * At the end the root reaps the zombies by PID with their statuses and the live
 * child (which exits 3 when its pipe closes). */
#include "feature.h"

#include <sys/wait.h>

int main(void)
{
  pid_t z1 = fork();
  CHECK_SYS(z1);
  if (z1 == 0) _exit(7);
  pid_t z2 = fork();
  CHECK_SYS(z2);
  if (z2 == 0) {
    signal(SIGUSR1, SIG_DFL);
    raise(SIGUSR1);
    _exit(1);
  }
  int stop[2];
  CHECK_SYS(pipe(stop));
  pid_t live = fork();
  CHECK_SYS(live);
  if (live == 0) {
    char c;
    close(stop[1]);
    while (read(stop[0], &c, 1) > 0) {}
    _exit(3);
  }
  close(stop[0]);
  for (int step = 1; step <= 30; step++) {
    pid_t z[2] = {z1, z2};
    for (int i = 0; i < 2; i++) {
      siginfo_t si;
      memset(&si, 0, sizeof si);
      /* WEXITED|WNOWAIT blocks until it has ended (at once after the first step). */
      CHECK_SYS(waitid(P_PID, (id_t)z[i], &si, WEXITED | WNOWAIT));
      CHECK(si.si_pid == z[i], "waitid: pid %d, want %d", si.si_pid, z[i]);
      CHECK(i == 0 ? (si.si_code == CLD_EXITED && si.si_status == 7)
                   : (si.si_code == CLD_KILLED && si.si_status == SIGUSR1),
            "zombie %d: code %d status %d", i, si.si_code, si.si_status);
    }
    CHECK(waitpid(live, NULL, WNOHANG) == 0, "the live child ended early");
    sleep_ms(50);
    feature_step(step);
  }
  int st;
  CHECK(waitpid(z1, &st, 0) == z1 && WIFEXITED(st) && WEXITSTATUS(st) == 7, "reaping the first zombie: %#x", st);
  CHECK(waitpid(z2, &st, 0) == z2 && WIFSIGNALED(st) && WTERMSIG(st) == SIGUSR1, "reaping the second zombie: %#x", st);
  close(stop[1]);
  CHECK(waitpid(live, &st, 0) == live && WIFEXITED(st) && WEXITSTATUS(st) == 3, "reaping the live child: %#x", st);
  printf("zombies reaped: exit 7, signal %d; live child exit 3\n", SIGUSR1);
  puts("PASS");
  return 0;
}
