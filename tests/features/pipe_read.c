/* pipe_read: a thread blocked in read() on a pipe whose writer is another
 * thread of the same program. The writer sleeps 100 ms, then writes one
 * 64-byte message in two halves 1 ms apart; the reader reads exactly 64
 * bytes per message, so it spends nearly all its time blocked in read(),
 * sometimes with half a message already in its buffer. The main thread
 * prints "STEP n" once message n has arrived, so a checkpoint at any step
 * finds the reader blocked and the writer's next message still to come.
 * A second pipe holds 8 KiB written at the start and read (non-blocking)
 * only at the end: data in flight in a pipe must survive.
 *
 * usage: pipe_read [STEPS]   (default 30 steps)
 */
#include "feature.h"

#include <fcntl.h>
#include <pthread.h>

enum { MSG = 64, STEP_MS = 100, BACKLOG = 8192 };

static int feed[2], backlog[2], steps, received;
static uint64_t checksum;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void make_msg(char *buf, int s)
{
  memset(buf, '.', MSG);
  snprintf(buf, MSG, "message %04d %016llx", s, (unsigned long long)mix64((uint64_t)s));
  buf[MSG - 1] = '\n';
}

static void *writer(void *arg)
{
  (void)arg;
  char msg[MSG];
  for (int s = 1; s <= steps; s++) {
    sleep_ms(STEP_MS);
    make_msg(msg, s);
    write_all(feed[1], msg, MSG / 2);
    sleep_ms(1);
    write_all(feed[1], msg + MSG / 2, MSG / 2);
  }
  close(feed[1]);
  return NULL;
}

static void *reader(void *arg)
{
  (void)arg;
  char msg[MSG], want[MSG];
  for (int s = 1; s <= steps; s++) {
    read_exact(feed[0], msg, MSG);
    make_msg(want, s);
    CHECK(memcmp(msg, want, MSG) == 0, "message %d: got '%.*s'", s, MSG - 1, msg);
    pthread_mutex_lock(&m);
    checksum = fnv1a(checksum, msg, MSG);
    received = s;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&m);
  }
  char c;
  CHECK(read(feed[0], &c, 1) == 0, "the feed pipe did not end after the last message");
  return NULL;
}

int main(int argc, char **argv)
{
  steps = argc > 1 ? parse_int(argv[1]) : 30;
  checksum = FNV_INIT;
  CHECK_SYS(pipe(feed));
  CHECK_SYS(pipe2(backlog, O_CLOEXEC));
  CHECK_SYS(fcntl(backlog[0], F_SETFL, O_NONBLOCK));
  char buf[BACKLOG];
  for (int i = 0; i < BACKLOG; i++)
    buf[i] = (char)mix64((uint64_t)i);
  write_all(backlog[1], buf, BACKLOG);

  printf("pipe_read: %d steps\n", steps);
  pthread_t tr, tw;
  CHECK(pthread_create(&tr, NULL, reader, NULL) == 0, "pthread_create");
  CHECK(pthread_create(&tw, NULL, writer, NULL) == 0, "pthread_create");
  for (int s = 1; s <= steps; s++) {
    pthread_mutex_lock(&m);
    while (received < s)
      pthread_cond_wait(&cv, &m);
    pthread_mutex_unlock(&m);
    feature_step(s);
  }
  CHECK(pthread_join(tr, NULL) == 0 && pthread_join(tw, NULL) == 0, "pthread_join");

  CHECK((fcntl(backlog[0], F_GETFL) & O_NONBLOCK) && !(fcntl(backlog[1], F_GETFL) & O_NONBLOCK),
        "O_NONBLOCK of the backlog pipe changed");
  CHECK(fcntl(backlog[0], F_GETFD) == FD_CLOEXEC && fcntl(feed[0], F_GETFD) == 0, "FD_CLOEXEC changed");
  char back[BACKLOG + 1];
  ssize_t got = 0, r;
  while ((r = read(backlog[0], back + got, sizeof back - (size_t)got)) > 0)
    got += r;
  CHECK(r < 0 && errno == EAGAIN, "backlog read ended with %zd (%s), want EAGAIN", r, strerror(errno));
  CHECK(got == BACKLOG && memcmp(back, buf, BACKLOG) == 0, "backlog pipe returned %zd bytes", got);

  printf("messages %d checksum %016llx\n", steps, (unsigned long long)checksum);
  printf("backlog %d bytes intact\n", BACKLOG);
  printf("PASS\n");
  return 0;
}
