/* libuv: a real event loop across a checkpoint. libuv (1.44 here) runs on an
 * epoll instance, wakes the loop for uv_async with an eventfd and keeps a
 * pipe for signals; the program adds
 * - a repeating 100 ms uv_timer whose callback prints STEP n (the loop sits
 *   in epoll_wait between callbacks, where a checkpoint comes),
 * - a helper thread that, once per step, calls uv_async_send and then writes
 *   a 16-byte message into a pipe the loop reads through a uv_pipe_t; it
 *   sends the next only after the async callback ran, so no two sends merge.
 * The loop ends by itself once the timer stopped, every async callback ran
 * and every message was read; the counts and a checksum of the messages are
 * printed.
 *
 * usage: libuv [STEPS]     (default 30 steps of 100 ms)
 */
#include "feature.h"

#include <pthread.h>
#include <uv.h>

enum { STEP_MS = 100, MSG = 16 };

static uv_loop_t *loop;
static uv_timer_t timer;
static uv_async_t async;
static uv_pipe_t in;
static int steps, step, requested, acked, messages, closing, feed[2];
static char partial[MSG];
static size_t partial_len;
static uint64_t checksum = FNV_INIT;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

/* buf: at least 32 bytes; the message is its first MSG */
static void make_msg(char *buf, int r)
{
  snprintf(buf, 32, "round %04d ..ok\n", r % 10000);
}

static void maybe_finish(void)
{
  pthread_mutex_lock(&m);
  int done = step == steps && acked == steps && messages == steps;
  pthread_mutex_unlock(&m);
  if (done && !closing) {
    closing = 1;
    uv_close((uv_handle_t *)&async, NULL);
    uv_close((uv_handle_t *)&in, NULL);
  }
}

static void on_tick(uv_timer_t *t)
{
  step++;
  feature_step(step);
  pthread_mutex_lock(&m);
  requested = step;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&m);
  if (step == steps) {
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
  }
  maybe_finish();
}

static void on_async(uv_async_t *a)
{
  (void)a;
  pthread_mutex_lock(&m);
  acked++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&m);
  maybe_finish();
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  (void)h, (void)suggested;
  static char space[4096];
  *buf = uv_buf_init(space, sizeof space);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  (void)s;
  CHECK(n >= 0, "pipe read: %s", uv_strerror((int)n));
  for (ssize_t i = 0; i < n; i++) {
    partial[partial_len++] = buf->base[i];
    if (partial_len < MSG)
      continue;
    char want[32];
    make_msg(want, messages + 1);
    CHECK(memcmp(partial, want, MSG) == 0, "message %d: '%.*s'", messages + 1, MSG - 1, partial);
    checksum = fnv1a(checksum, partial, MSG);
    partial_len = 0;
    pthread_mutex_lock(&m);
    messages++;
    pthread_mutex_unlock(&m);
  }
  maybe_finish();
}

static void *helper(void *arg)
{
  (void)arg;
  for (int r = 1; r <= steps; r++) {
    pthread_mutex_lock(&m);
    while (requested < r || acked < r - 1)
      pthread_cond_wait(&cv, &m);
    pthread_mutex_unlock(&m);
    CHECK(uv_async_send(&async) == 0, "uv_async_send");
    char msg[32];
    make_msg(msg, r);
    write_all(feed[1], msg, MSG);
  }
  return NULL;
}

int main(int argc, char **argv)
{
  steps = argc > 1 ? parse_int(argv[1]) : 30;
  loop = uv_default_loop();
  CHECK_SYS(pipe(feed));
  CHECK(uv_timer_init(loop, &timer) == 0, "uv_timer_init");
  CHECK(uv_async_init(loop, &async, on_async) == 0, "uv_async_init");
  CHECK(uv_pipe_init(loop, &in, 0) == 0 && uv_pipe_open(&in, feed[0]) == 0, "uv_pipe_open");
  CHECK(uv_read_start((uv_stream_t *)&in, on_alloc, on_read) == 0, "uv_read_start");
  CHECK(uv_timer_start(&timer, on_tick, STEP_MS, STEP_MS) == 0, "uv_timer_start");
  pthread_t t;
  CHECK(pthread_create(&t, NULL, helper, NULL) == 0, "pthread_create");

  printf("libuv: %d steps\n", steps);
  int r = uv_run(loop, UV_RUN_DEFAULT);
  CHECK(r == 0, "uv_run returned %d", r);
  CHECK(pthread_join(t, NULL) == 0, "pthread_join");
  CHECK(uv_loop_close(loop) == 0, "uv_loop_close: handles left");
  printf("timer ticks %d, async callbacks %d\n", step, acked);
  printf("pipe messages %d checksum %016llx\n", messages, (unsigned long long)checksum);
  printf("PASS\n");
  return 0;
}
