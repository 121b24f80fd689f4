/* file_locks: locks held on files across a checkpoint, a restart and a migration,
 * seen by another process (docs/kinds/file_lock.md).
 *
 * usage: feature_file_locks DIR [STEPS]   (30 steps unless said)
 *
 * Held all along, on DIR/locked: an fcntl (POSIX) WRITE lock on bytes 0-99 through
 * one fd, an OFD READ lock from byte 200 to the end through a second, a flock
 * LOCK_EX through a third; and per step an fcntl WRITE lock on byte 100+step (the
 * one of the step before released). A checker child, forked at the start (a tree of
 * two: checkpointed and restarted with its parent; left at home when the parent
 * alone migrates), is asked every step over a pipe to open the file anew (its own
 * open file description, so it contends as any other process would) and must see
 * each lock: F_OFD_GETLK names the parent's fcntl locks by the parent's PID and the
 * OFD lock by -1, a READ test over the OFD lock finds nothing, flock LOCK_NB fails
 * with EWOULDBLOCK. Every 5th step the parent waits for a lock the checker takes
 * on DIR/queue when asked (flock LOCK_EX, then F_SETLKW against its OFD lock): the
 * wait ends only after the checker has said it lets go. At step 10 an F_SETLKW that
 * cannot be had is interrupted by SIGALRM (a handler without SA_RESTART): EINTR, as
 * without mig; then, the handler with SA_RESTART, the wait goes on after it and ends
 * when the checker, told by the handler, lets go. Only the checker (born before any
 * move, so it stays at home) holds what the parent waits for: a child born on
 * another host is left there by the next hop, and its fcntl locks are its parent's
 * at home (both are the deputy there).
 */
#include "feature.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/time.h>
#include <sys/wait.h>

static char locked_path[4096], queue_path[4096];
static volatile sig_atomic_t alarms;
static int release_fd = -1;  /* the handler tells the checker to let go through it */

static void on_alarm(int sig, siginfo_t *si, void *uc)
{
  (void)sig; (void)si; (void)uc;
  alarms++;
  const int release = -4;  /* CMD_RELEASE */
  if (release_fd >= 0 && write(release_fd, &release, sizeof release) != (ssize_t)sizeof release) _exit(3);
}

static int open_or_die(const char *path, int flags)
{
  int fd = open(path, flags | O_CLOEXEC, 0600);
  if (fd < 0) feature_fail("open %s: %s", path, strerror(errno));
  return fd;
}

/* F_OFD_GETLK of a TYPE lock on [start, start+len) through fd: the conflicting
 * lock's type, and its pid in *pid. */
static int ofd_test(int fd, short type, off_t start, off_t len, pid_t *pid)
{
  struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) feature_fail("F_OFD_GETLK: %s", strerror(errno));
  *pid = fl.l_pid;
  return fl.l_type;
}

/* One check, in the checker: another open file description of DIR/locked. Fails
 * (exit 1, the line on stderr) unless every lock of the parent is seen as it should. */
static void check_locks(int step)
{
  int fd = open_or_die(locked_path, O_RDWR);
  pid_t parent = getppid(), pid = 0;
  int t = ofd_test(fd, F_RDLCK, 0, 100, &pid);
  if (t != F_WRLCK || pid != parent)
    feature_fail("step %d: checker: fcntl WRITE lock 0-99 not seen (type %d, pid %d, parent %d)", step, t, pid,
                 parent);
  t = ofd_test(fd, F_WRLCK, 300, 10, &pid);
  if (t != F_RDLCK || pid != -1)
    feature_fail("step %d: checker: OFD READ lock from 200 not seen (type %d, pid %d)", step, t, pid);
  t = ofd_test(fd, F_RDLCK, 200, 0, &pid);
  if (t != F_UNLCK) feature_fail("step %d: checker: a READ test over the OFD READ lock conflicts (type %d)", step, t);
  t = ofd_test(fd, F_WRLCK, 100 + step, 1, &pid);
  if (t != F_WRLCK || pid != parent)
    feature_fail("step %d: checker: the step's fcntl lock on byte %d not seen (type %d, pid %d)", step, 100 + step,
                 t, pid);
  t = ofd_test(fd, F_WRLCK, 100 + step - 1, 1, &pid);
  if (t != F_UNLCK) feature_fail("step %d: checker: the last step's lock on byte %d still held", step, 100 + step - 1);
  if (flock(fd, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK)
    feature_fail("step %d: checker: flock LOCK_SH|LOCK_NB did not meet the parent's LOCK_EX (%s)", step,
                 strerror(errno));
  close(fd);
}

/* Commands to the checker on its pipe (an int), besides a step number to check. */
enum {
  CMD_END = 0,
  CMD_FLOCK = -1,     /* take flock LOCK_EX on DIR/queue, 'T'; 30 ms later 'R' and let go */
  CMD_OFD = -2,       /* the same with an OFD WRITE lock on its byte 0 */
  CMD_HOLD = -3,      /* take the OFD lock, 'T', and keep it until CMD_RELEASE */
  CMD_RELEASE = -4,   /* 'R' and let go of what CMD_HOLD took */
};

/* Takes a lock on DIR/queue as a process other than the parent; its fd. */
static int take_queue_lock(int use_flock)
{
  int fd = open_or_die(queue_path, O_RDWR);
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
  if (use_flock ? flock(fd, LOCK_EX | LOCK_NB) : fcntl(fd, F_OFD_SETLK, &fl))
    feature_fail("checker: lock on %s: %s", queue_path, strerror(errno));
  return fd;
}

static void say(int resp, char c)
{
  if (write(resp, &c, 1) != 1) feature_fail("checker: write: %s", strerror(errno));
}

/* The checker child: a step number on `req` (checked, then 'k' on `resp`), or a
 * command. */
static void checker(int req, int resp)
{
  int held = -1;
  for (;;) {
    int cmd;
    ssize_t n = read(req, &cmd, sizeof cmd);
    if (n == -1 && errno == EINTR) continue;
    if (n != (ssize_t)sizeof cmd) feature_fail("checker: read: %zd (%s)", n, strerror(errno));
    switch (cmd) {
      case CMD_END: _exit(0);
      case CMD_FLOCK: case CMD_OFD: {
        int fd = take_queue_lock(cmd == CMD_FLOCK);
        say(resp, 'T');
        sleep_ms(30);
        say(resp, 'R');
        close(fd);  /* lets go */
        break;
      }
      case CMD_HOLD:
        held = take_queue_lock(0);
        say(resp, 'T');
        break;
      case CMD_RELEASE:
        say(resp, 'R');
        close(held);
        held = -1;
        break;
      default:
        check_locks(cmd);
        say(resp, 'k');
    }
  }
}

static void wait_child(pid_t child, const char *what)
{
  int status;
  if (waitpid(child, &status, 0) != child) feature_fail("waitpid (%s): %s", what, strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) feature_fail("%s: child ended with status %#x", what, status);
}

static int req_fd = -1, resp_fd = -1;  /* the parent's ends of the checker's pipes */

static void ask(int cmd)
{
  if (write(req_fd, &cmd, sizeof cmd) != (ssize_t)sizeof cmd) feature_fail("write to the checker: %s", strerror(errno));
}

static char answer(void)
{
  char c = 0;
  if (read(resp_fd, &c, 1) != 1) feature_fail("the checker did not answer (it failed: see its line above)");
  return c;
}

/* Waits for a lock the checker holds; it must be ours only after it said it lets go. */
static void wait_for_holder(int use_flock, int step)
{
  ask(use_flock ? CMD_FLOCK : CMD_OFD);
  if (answer() != 'T') feature_fail("step %d: the checker did not take its lock", step);
  int fd = open_or_die(queue_path, O_RDWR);
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
  int r = use_flock ? flock(fd, LOCK_EX) : fcntl(fd, F_SETLKW, &fl);
  if (r != 0) feature_fail("step %d: waiting %s: %s", step, use_flock ? "flock" : "F_SETLKW", strerror(errno));
  /* 'R' went into the pipe before the checker let go: it is there now. */
  if (answer() != 'R') feature_fail("step %d: %s returned before the holder let go", step, use_flock ? "flock" : "F_SETLKW");
  close(fd);
}

/* F_SETLKW on a lock the checker keeps: SIGALRM (no SA_RESTART) must end it with
 * EINTR; with SA_RESTART it goes on after the handler, which tells the checker to let
 * go. */
static void interrupted_wait(void)
{
  ask(CMD_HOLD);
  if (answer() != 'T') feature_fail("the checker did not take its lock");
  int fd = open_or_die(queue_path, O_RDWR);
  feature_handle(SIGALRM, on_alarm, 0);
  struct itimerval it = {{0, 0}, {0, 100 * 1000}};
  CHECK_SYS(setitimer(ITIMER_REAL, &it, NULL));
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
  int r = fcntl(fd, F_SETLKW, &fl);
  CHECK(r == -1 && errno == EINTR, "F_SETLKW on a held lock with SIGALRM coming: %d (%s), not EINTR", r,
        strerror(errno));
  CHECK(alarms == 1, "the SIGALRM handler ran %d times, not once", (int)alarms);
  feature_handle(SIGALRM, on_alarm, SA_RESTART);
  release_fd = req_fd;
  CHECK_SYS(setitimer(ITIMER_REAL, &it, NULL));
  r = fcntl(fd, F_SETLKW, &fl);
  CHECK(r == 0, "F_SETLKW with a SA_RESTART SIGALRM coming: %d (%s), not taken", r, strerror(errno));
  CHECK(alarms == 2, "the SIGALRM handler ran %d times, not twice", (int)alarms);
  release_fd = -1;
  if (answer() != 'R') feature_fail("the checker did not let go");
  close(fd);
}

int main(int argc, char **argv)
{
  if (argc < 2 || argc > 3) feature_fail("usage: feature_file_locks DIR [STEPS]");
  const int steps = argc == 3 ? atoi(argv[2]) : 30;
  if (steps < 1 || steps > 99) feature_fail("STEPS must be 1 to 99 (a byte each, below the OFD lock at 200)");
  snprintf(locked_path, sizeof locked_path, "%s/locked", argv[1]);
  snprintf(queue_path, sizeof queue_path, "%s/queue", argv[1]);
  int fd = open_or_die(locked_path, O_RDWR | O_CREAT | O_TRUNC);
  char page[4096];
  memset(page, 'x', sizeof page);
  if (write(fd, page, sizeof page) != (ssize_t)sizeof page) feature_fail("write: %s", strerror(errno));
  close(open_or_die(queue_path, O_RDWR | O_CREAT | O_TRUNC));

  int posix_fd = open_or_die(locked_path, O_RDWR);
  int ofd_fd = open_or_die(locked_path, O_RDWR);
  int flock_fd = open_or_die(locked_path, O_RDONLY);
  close(fd);  /* no lock was taken through it */
  struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100};
  CHECK_SYS(fcntl(posix_fd, F_SETLK, &w));
  struct flock r = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 200, .l_len = 0};
  CHECK_SYS(fcntl(ofd_fd, F_OFD_SETLK, &r));
  CHECK_SYS(flock(flock_fd, LOCK_EX | LOCK_NB));

  int req[2], resp[2];
  CHECK_SYS(pipe(req));
  CHECK_SYS(pipe(resp));
  pid_t checker_pid = fork();
  CHECK_SYS(checker_pid);
  if (checker_pid == 0) {
    close(req[1]);
    close(resp[0]);
    close(posix_fd);
    close(ofd_fd);
    close(flock_fd);
    checker(req[0], resp[1]);
  }
  close(req[0]);
  close(resp[1]);
  req_fd = req[1];
  resp_fd = resp[0];

  int waits = 0, interrupted = 0;
  for (int step = 1; step <= steps; step++) {
    struct flock s = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100 + step, .l_len = 1};
    CHECK_SYS(fcntl(posix_fd, F_SETLK, &s));
    s.l_type = F_UNLCK;
    s.l_start = 100 + step - 1;
    if (step > 1) CHECK_SYS(fcntl(posix_fd, F_SETLK, &s));
    ask(step);
    if (answer() != 'k') feature_fail("step %d: the checker's answer is not 'k'", step);
    if (step % 5 == 0) {
      wait_for_holder(1, step);
      wait_for_holder(0, step);
      waits += 2;
    }
    if (step == 10) {
      interrupted_wait();
      interrupted++;
    }
    feature_step(step);
    sleep_ms(50);
  }
  ask(CMD_END);
  wait_child(checker_pid, "checker");
  /* Our own F_GETLK sees none of our fcntl locks (they are ours: the OFD lock from
   * 200 on belongs to its open file description, not to us); unlocking works. */
  struct flock g = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 200};
  CHECK_SYS(fcntl(posix_fd, F_GETLK, &g));
  CHECK(g.l_type == F_UNLCK, "F_GETLK found a lock of another process (type %d, pid %d)", g.l_type, g.l_pid);
  CHECK_SYS(flock(flock_fd, LOCK_UN));
  w.l_type = F_UNLCK;
  CHECK_SYS(fcntl(posix_fd, F_SETLK, &w));
  printf("locks held through %d steps, seen by the checker every step; %d waits ended by the holder, %d by a "
         "signal (then restarted)\n", steps, waits, interrupted);
  printf("PASS\n");
  return 0;
}
