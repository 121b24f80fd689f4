/* tree_fifo: a root and its child talking through a FIFO (named pipe) the root made
 * in DIR: each round the root writes three numbers into the FIFO, the child reads
 * them one by one with pauses (so bytes wait in the FIFO at a checkpoint) and sends
 * their sum back through a pipe. After a restart the FIFO must be one pipe again for
 * both, with the bytes that were in it, and still the file DIR/fifo (another opener
 * reaches the same pipe: checked at the end). usage: tree_fifo DIR */
#include "feature.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define ROUNDS 30

int main(int argc, char **argv)
{
  CHECK(argc == 2, "usage: tree_fifo DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/fifo", argv[1]);
  CHECK_SYS(mkfifo(path, 0600));
  int back[2];
  CHECK_SYS(pipe(back));
  pid_t kid = fork();
  CHECK_SYS(kid);
  if (kid == 0) {
    close(back[0]);
    int in = open(path, O_RDONLY);
    CHECK_SYS(in);
    for (;;) {
      long v[3];
      for (int i = 0; i < 3; i++) {
        read_full(in, &v[i], sizeof v[i], "child");
        if (v[i] < 0) _exit(0);
        sleep_ms(25); /* the rest waits in the FIFO meanwhile */
      }
      long sum = v[0] + v[1] + v[2];
      CHECK(write(back[1], &sum, sizeof sum) == (ssize_t)sizeof sum, "child: write: %s", strerror(errno));
    }
  }
  close(back[1]);
  int out = open(path, O_WRONLY);
  CHECK_SYS(out);
  long total = 0;
  for (long r = 1; r <= ROUNDS; r++) {
    long v[3] = { r * 100 + 1, r * 100 + 2, r * 100 + 3 };
    CHECK(write(out, v, sizeof v) == (ssize_t)sizeof v, "root: write: %s", strerror(errno));
    long sum;
    read_full(back[0], &sum, sizeof sum, "root");
    CHECK(sum == r * 300 + 6, "round %ld: the child summed %ld, want %ld", r, sum, r * 300 + 6);
    total += sum;
    feature_step((int)r);
  }
  /* The FIFO is still the file: a new opener reaches the same pipe. */
  int other = open(path, O_WRONLY | O_NONBLOCK);
  CHECK_SYS(other);
  long end = -1;
  CHECK(write(other, &end, sizeof end) == (ssize_t)sizeof end, "write to the FIFO by its path: %s", strerror(errno));
  close(other);
  int status;
  CHECK(waitpid(kid, &status, 0) == kid, "waitpid: %s", strerror(errno));
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ended with status %#x", status);
  printf("a FIFO between 2 processes: %d rounds, total %ld\n", ROUNDS, total);
  puts("PASS");
  return 0;
}
