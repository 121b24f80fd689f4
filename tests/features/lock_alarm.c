/* lock_alarm: waits for a file lock that a signal ends, the signal coming while a
 * checkpoint has the process parked in the wait (tests/features/lock_alarm_test.sh).
 *
 * usage: feature_lock_alarm DIR
 *
 * The process holds an OFD WRITE lock on byte 0 of DIR/lock through one open file
 * description and waits for an fcntl WRITE lock on the same byte through another (an
 * fcntl lock conflicts with an OFD lock even of the same process), so the wait ends
 * only by a signal. Twice, each time after printing "STEP n" and each ended by one
 * SIGALRM sent from outside while it waits:
 *   STEP 1: the SIGALRM handler has no SA_RESTART: F_SETLKW fails with EINTR, the
 *           handler having run once;
 *   STEP 2: the handler has SA_RESTART and lets go of the OFD lock: the wait goes on
 *           after it and takes the lock.
 * Without mig a signal ends the wait that way whenever it comes; under mig also when it
 * comes while the process is parked for a checkpoint (it waits in the parked thread
 * and is delivered as the job goes on, in place or restored elsewhere), which the test
 * makes sure of. SIGUSR2 is never blocked here: the test tells the park by it (the
 * checkpoint handler blocks every signal).
 */
#include "feature.h"

#include <fcntl.h>

static volatile sig_atomic_t alarms;
static int holder = -1;  /* the fd of the OFD lock */

static void on_alarm(int sig, siginfo_t *si, void *uc)
{
  (void)sig; (void)si; (void)uc;
  alarms++;
}

static void on_alarm_release(int sig, siginfo_t *si, void *uc)
{
  (void)sig; (void)si; (void)uc;
  alarms++;
  struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
  if (fcntl(holder, F_OFD_SETLK, &fl) != 0) _exit(3);
}

int main(int argc, char **argv)
{
  if (argc != 2) feature_fail("usage: feature_lock_alarm DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/lock", argv[1]);
  holder = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int waiter = open(path, O_RDWR | O_CLOEXEC);
  if (holder < 0 || waiter < 0) feature_fail("open %s: %s", path, strerror(errno));
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
  CHECK_SYS(fcntl(holder, F_OFD_SETLK, &fl));

  feature_handle(SIGALRM, on_alarm, 0);
  feature_step(1);
  int r = fcntl(waiter, F_SETLKW, &fl);
  CHECK(r == -1 && errno == EINTR, "F_SETLKW ended by a SIGALRM without SA_RESTART: %d (%s), not EINTR", r,
        r == 0 ? "taken" : strerror(errno));
  CHECK(alarms == 1, "the SIGALRM handler ran %d times, not once", (int)alarms);
  printf("F_SETLKW: EINTR after the handler ran once\n");

  feature_handle(SIGALRM, on_alarm_release, SA_RESTART);
  feature_step(2);
  r = fcntl(waiter, F_SETLKW, &fl);
  CHECK(r == 0, "F_SETLKW with a SA_RESTART SIGALRM handler that lets go: %d (%s), not taken", r, strerror(errno));
  CHECK(alarms == 2, "the SIGALRM handler ran %d times, not twice", (int)alarms);
  printf("F_SETLKW: taken after the SA_RESTART handler let go\n");
  printf("PASS\n");
  return 0;
}
