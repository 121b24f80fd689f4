/* epoll: an epoll instance whose registrations must come back exactly.
 * ep watches
 * - the read end of pipe P, level-triggered (data: a 64-bit constant): a byte
 *   is written at steps s % 3 == 1 and one is read at steps s % 4 == 0 when
 *   reported, so bytes mostly wait across a checkpoint and must be reported
 *   again;
 * - eventfd E, edge-triggered (data: a pointer to a static struct): written
 *   at even steps, drained when reported, as edge-triggered code does;
 * - eventfd O, oneshot (data: its fd number): written at steps s % 4 == 1,
 *   never read, re-armed (EPOLL_CTL_MOD) at steps s % 8 == 0, so it is mostly
 *   a oneshot that fired and must stay disarmed with its target readable;
 * - the write end of P, oneshot EPOLLOUT: fires once at the start and never
 *   again (always writable: a restore that re-arms it shows at once);
 * - eventfd X, EPOLLEXCLUSIVE, never written.
 * ep2 watches ep (level): an epoll watching an epoll.
 * At every step epoll_wait(ep2, 0) and epoll_wait(ep, 0) must report exactly
 * what a model of the above says. A thread is blocked in epoll_wait(ep3, -1),
 * ep3 watching eventfd W that the main thread writes at every step.
 * At the end ep's registrations as /proc/self/fdinfo shows them (fd, events,
 * data; sorted) and how often each was reported are printed.
 *
 * usage: epoll [STEPS]     (default 30 steps of 100 ms)
 */
#include "feature.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

enum { STEP_MS = 100, MAXEV = 8 };
#define P_DATA 0x1111222233334444ULL
#define PW_DATA 0xabcdULL
#define X_DATA 0x5eULL

struct slot { const char *name; int reports; };
static struct slot e_slot = { "E", 0 };
static int ep, ep2, ep3, p[2], e, o, x, w, steps, woken;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void reg(int epfd, int op, int fd, uint32_t events, uint64_t data)
{
  struct epoll_event ev = { .events = events, .data.u64 = data };
  CHECK(epoll_ctl(epfd, op, fd, &ev) == 0, "epoll_ctl(%d, %d, fd %d): %s", epfd, op, fd, strerror(errno));
}

static void *waiter(void *arg)
{
  (void)arg;
  for (int s = 1; s <= steps; s++) {
    struct epoll_event ev;
    int n = epoll_wait(ep3, &ev, 1, -1);
    CHECK(n == 1 && ev.data.u64 == 3, "step %d: epoll_wait(ep3) gave %d (%s)", s, n, n < 0 ? strerror(errno) : "");
    uint64_t v;
    CHECK(read(w, &v, sizeof v) == (ssize_t)sizeof v && v == 1, "step %d: W read", s);
    pthread_mutex_lock(&m);
    woken = s;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&m);
  }
  return NULL;
}

static void put(int fd)
{
  uint64_t one = 1;
  CHECK(write(fd, &one, sizeof one) == (ssize_t)sizeof one, "write(eventfd %d): %s", fd, strerror(errno));
}

/* fdinfo's registrations of epfd: "fd events data" lines, sorted by fd. */
static void print_registrations(int epfd)
{
  char path[64], buf[256];
  int fds[16], n = 0;
  unsigned events[16];
  unsigned long long data[16];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", epfd);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL, "open %s: %s", path, strerror(errno));
  while (fgets(buf, sizeof buf, f) && n < 16)
    if (sscanf(buf, "tfd: %d events: %x data: %llx", &fds[n], &events[n], &data[n]) == 3)
      n++;
  fclose(f);
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (fds[j] < fds[i]) {
        int tf = fds[i]; fds[i] = fds[j]; fds[j] = tf;
        unsigned te = events[i]; events[i] = events[j]; events[j] = te;
        unsigned long long td = data[i]; data[i] = data[j]; data[j] = td;
      }
  for (int i = 0; i < n; i++) {
    /* fd numbers and the pointer's value differ between runs: print names */
    const char *name = fds[i] == p[0] ? "P[0]" : fds[i] == p[1] ? "P[1]" : fds[i] == e ? "E" : fds[i] == o ? "O"
                     : fds[i] == x ? "X" : "?";
    if (data[i] == (unsigned long long)(uintptr_t)&e_slot)
      snprintf(buf, sizeof buf, "&e_slot");
    else if (data[i] == (unsigned long long)o)
      snprintf(buf, sizeof buf, "O's fd");
    else
      snprintf(buf, sizeof buf, "%llx", data[i]);
    printf("ep watches %s: events %08x data %s\n", name, events[i], buf);
  }
}

int main(int argc, char **argv)
{
  steps = argc > 1 ? parse_int(argv[1]) : 30;
  CHECK_SYS(pipe2(p, O_NONBLOCK));
  CHECK_SYS(e = eventfd(0, EFD_NONBLOCK));
  CHECK_SYS(o = eventfd(0, EFD_NONBLOCK));
  CHECK_SYS(x = eventfd(0, EFD_NONBLOCK));
  CHECK_SYS(w = eventfd(0, 0));
  CHECK_SYS(ep = epoll_create1(EPOLL_CLOEXEC));
  CHECK_SYS(ep2 = epoll_create1(0));
  CHECK_SYS(ep3 = epoll_create1(0));
  reg(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, P_DATA);
  struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = &e_slot };
  CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev));
  reg(ep, EPOLL_CTL_ADD, o, EPOLLIN | EPOLLONESHOT, (uint64_t)o);
  reg(ep, EPOLL_CTL_ADD, p[1], EPOLLOUT | EPOLLONESHOT, PW_DATA);
  reg(ep, EPOLL_CTL_ADD, x, EPOLLIN | EPOLLEXCLUSIVE, X_DATA);
  reg(ep2, EPOLL_CTL_ADD, ep, EPOLLIN, 2);
  reg(ep3, EPOLL_CTL_ADD, w, EPOLLIN, 3);

  struct epoll_event evs[MAXEV];
  int n = epoll_wait(ep, evs, MAXEV, 0);
  CHECK(n == 1 && evs[0].data.u64 == PW_DATA, "at the start epoll_wait gave %d events", n);

  pthread_t t;
  CHECK(pthread_create(&t, NULL, waiter, NULL) == 0, "pthread_create");
  printf("epoll: %d steps\n", steps);
  int pipe_bytes = 0, e_edge = 0, o_count = 0, o_armed = 1;
  int p_reports = 0, o_reports = 0;
  uint64_t sum = FNV_INIT;
  for (int s = 1; s <= steps; s++) {
    if (s % 3 == 1) {
      CHECK(write(p[1], "b", 1) == 1, "write(pipe): %s", strerror(errno));
      pipe_bytes++;
    }
    if (s % 2 == 0) {
      put(e);
      e_edge = 1;
    }
    if (s % 4 == 1) {
      put(o);
      o_count++;
    }
    if (s % 8 == 0) {
      reg(ep, EPOLL_CTL_MOD, o, EPOLLIN | EPOLLONESHOT, (uint64_t)o);
      o_armed = 1;
    }
    int want_p = pipe_bytes > 0, want_e = e_edge, want_o = o_armed && o_count > 0;
    int want = want_p + want_e + want_o;

    n = epoll_wait(ep2, evs, MAXEV, 0);
    CHECK(n == (want > 0) && (n == 0 || evs[0].data.u64 == 2), "step %d: ep2 reported %d, want %d", s, n, want > 0);
    n = epoll_wait(ep, evs, MAXEV, 0);
    CHECK(n >= 0, "epoll_wait: %s", strerror(errno));
    int got_p = 0, got_e = 0, got_o = 0;
    struct slot *e_ptr = NULL;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u64 == P_DATA && evs[i].events == EPOLLIN)
        got_p++;
      else if (evs[i].data.ptr == &e_slot && evs[i].events == EPOLLIN)
        got_e++, e_ptr = evs[i].data.ptr;
      else if (evs[i].data.u64 == (uint64_t)o && evs[i].events == EPOLLIN)
        got_o++;
      else
        feature_fail("step %d: unexpected event %#x data %#llx", s, evs[i].events, (unsigned long long)evs[i].data.u64);
    }
    CHECK(n == want && got_p == want_p && got_e == want_e && got_o == want_o,
          "step %d: epoll_wait reported pipe %d eventfd-ET %d oneshot %d, want %d %d %d", s, got_p, got_e, got_o,
          want_p, want_e, want_o);
    sum = fnv1a(sum, &s, sizeof s);
    sum = fnv1a(sum, &want, sizeof want);
    if (got_p) {
      p_reports++;
      if (s % 4 == 0) {
        char c;
        CHECK(read(p[0], &c, 1) == 1, "read(pipe): %s", strerror(errno));
        pipe_bytes--;
      }
    }
    if (got_e) {
      uint64_t v;
      CHECK(read(e, &v, sizeof v) == (ssize_t)sizeof v && v == 1, "E held more than one write");
      e_ptr->reports++;
      e_edge = 0;
    }
    if (got_o) {
      o_reports++;
      o_armed = 0;
    }

    put(w);
    pthread_mutex_lock(&m);
    while (woken < s)
      pthread_cond_wait(&cv, &m);
    pthread_mutex_unlock(&m);
    feature_step(s);
    sleep_ms(STEP_MS);
  }
  CHECK(pthread_join(t, NULL) == 0, "pthread_join");
  CHECK(fcntl(ep, F_GETFD) == FD_CLOEXEC && fcntl(ep2, F_GETFD) == 0, "FD_CLOEXEC changed");

  print_registrations(ep);
  printf("reports: pipe %d, %s %d, oneshot %d; %d bytes left in the pipe\n", p_reports, e_slot.name,
         e_slot.reports, o_reports, pipe_bytes);
  printf("checksum %016llx\n", (unsigned long long)sum);
  printf("PASS\n");
  return 0;
}
