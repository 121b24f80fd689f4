/* uv_echo_server.c: the libuv check of the network tests. A TCP echo server on
 * libuv's own stream machinery (uv_tcp_t, uv_listen, uv_accept, uv_read_start,
 * uv_write), the way Node.js and other libuv programs serve: libuv makes every
 * socket non-blocking with ioctl(FIONBIO), sets TCP_NODELAY through setsockopt,
 * and waits in epoll. A migrated job's sockets stay at home, so all of that must
 * reach them there, and epoll must wake on their stand-ins.
 *
 * Listens on 127.0.0.1 on a free port and prints "port N"; answers each line
 * "LINE\n" with "echo LINE\n"; prints "client K" when one connects and "closed K"
 * when it leaves; after CLIENTS clients it closes everything and exits 0 when the
 * loop has nothing left.
 *
 * usage: uv_echo_server CLIENTS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
  uv_tcp_t tcp;
  int id;
  char line[4096];
  size_t len;
} client_t;

static uv_tcp_t listener;
static int wanted, accepted, closed;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base ? suggested : 0;
}

static void on_written(uv_write_t *req, int status)
{
  if (status < 0) fprintf(stderr, "uv_echo_server: write: %s\n", uv_strerror(status));
  free(req->data);
  free(req);
}

static void on_closed(uv_handle_t *h)
{
  client_t *c = (client_t *)h;
  printf("closed %d\n", c->id);
  free(c);
  if (++closed == wanted) uv_close((uv_handle_t *)&listener, NULL);
}

static void echo_line(client_t *c)
{
  size_t n = c->len + 6;
  char *out = malloc(n);
  memcpy(out, "echo ", 5);
  memcpy(out + 5, c->line, c->len);
  out[n - 1] = '\n';
  uv_write_t *req = malloc(sizeof *req);
  req->data = out;
  uv_buf_t buf = uv_buf_init(out, (unsigned)n);
  uv_write(req, (uv_stream_t *)&c->tcp, &buf, 1, on_written);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  client_t *c = (client_t *)s;
  for (ssize_t i = 0; i < n; i++) {
    if (buf->base[i] == '\n') {
      echo_line(c);
      c->len = 0;
    } else if (c->len < sizeof c->line) {
      c->line[c->len++] = buf->base[i];
    }
  }
  free(buf->base);
  if (n < 0) {
    if (n != UV_EOF) fprintf(stderr, "uv_echo_server: read: %s\n", uv_strerror((int)n));
    uv_close((uv_handle_t *)s, on_closed);
  }
}

static void on_connection(uv_stream_t *server, int status)
{
  if (status < 0) {
    fprintf(stderr, "uv_echo_server: listen: %s\n", uv_strerror(status));
    return;
  }
  client_t *c = calloc(1, sizeof *c);
  uv_tcp_init(server->loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, NULL);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->id = ++accepted;
  printf("client %d\n", c->id);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv)
{
  if (argc != 2 || (wanted = atoi(argv[1])) <= 0) {
    fprintf(stderr, "usage: uv_echo_server CLIENTS\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  uv_loop_t *loop = uv_default_loop();
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_init(loop, &listener);
  int r = uv_tcp_bind(&listener, (const struct sockaddr *)&addr, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&listener, 16, on_connection);
  if (r == 0) r = uv_tcp_getsockname(&listener, (struct sockaddr *)&bound, &len);
  if (r != 0) {
    fprintf(stderr, "uv_echo_server: %s\n", uv_strerror(r));
    return 1;
  }
  printf("port %d\n", ntohs(((struct sockaddr_in *)&bound)->sin_port));
  r = uv_run(loop, UV_RUN_DEFAULT);
  return r == 0 ? 0 : 1;
}
