// Calls that a checkpoint signal would turn into EINTR (the kernel's restart block
// does not survive, and a handler ran): sleeps, timed waits, pause. Each wrapper
// re-issues the call with the time that remains, not counting time spent frozen,
// so the application never sees a checkpoint. Application signals still interrupt
// them as before.
#include "shim/real_function.h"
#include "shim/runtime.h"

#include <cerrno>
#include <csignal>
#include <ctime>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <unistd.h>

using namespace mig::shim;

namespace {

int64_t monotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Was the call just interrupted by a checkpoint (and not by an application signal)?
bool checkpointEintr(int err) {
  if (err != EINTR || !t_checkpointInterrupted) return false;
  t_checkpointInterrupted = 0;
  return true;
}

// Milliseconds left of a `timeoutMs` wait begun at `startNs`, frozen time excluded.
int msLeft(int timeoutMs, int64_t startNs, int64_t frozenAtStart) {
  int64_t elapsed = monotonicNs() - startNs - (g_runtime.frozenNs - frozenAtStart);
  int64_t left = timeoutMs - elapsed / 1000000;
  return left < 0 ? 0 : static_cast<int>(left);
}

template <typename Call>
int waitWithTimeout(int timeoutMs, Call call) {
  int64_t start = monotonicNs();
  int64_t frozen = g_runtime.frozenNs;
  int left = timeoutMs;
  for (;;) {
    t_checkpointInterrupted = 0;
    int r = call(left);
    if (r >= 0 || !checkpointEintr(errno)) return r;
    if (timeoutMs > 0) left = msLeft(timeoutMs, start, frozen);
  }
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int clock_nanosleep(clockid_t clock, int flags,
                                                           const struct timespec* req,
                                                           struct timespec* rem) {
  struct timespec left = *req, r {};
  for (;;) {
    t_checkpointInterrupted = 0;
    // On a relative sleep the kernel stores the time left in r before the handler
    // runs, so r is right even in a restored copy.
    int e = MIG_REAL(clock_nanosleep)(clock, flags, &left, &r);
    if (!checkpointEintr(e)) {
      if (e == EINTR && rem != nullptr && !(flags & TIMER_ABSTIME)) *rem = r;
      return e;
    }
    if (!(flags & TIMER_ABSTIME)) left = r;
  }
}

__attribute__((visibility("default"))) int nanosleep(const struct timespec* req, struct timespec* rem) {
  int e = clock_nanosleep(CLOCK_REALTIME, 0, req, rem);
  if (e == 0) return 0;
  errno = e;
  return -1;
}

__attribute__((visibility("default"))) unsigned int sleep(unsigned int seconds) {
  struct timespec req = {static_cast<time_t>(seconds), 0}, rem {};
  if (nanosleep(&req, &rem) == 0) return 0;
  return static_cast<unsigned int>(rem.tv_sec + (rem.tv_nsec > 0 ? 1 : 0));
}

__attribute__((visibility("default"))) int usleep(useconds_t usec) {
  struct timespec req = {static_cast<time_t>(usec / 1000000), static_cast<long>(usec % 1000000) * 1000};
  return nanosleep(&req, nullptr);
}

__attribute__((visibility("default"))) int poll(struct pollfd* fds, nfds_t n, int timeout) {
  return waitWithTimeout(timeout, [&](int t) { return MIG_REAL(poll)(fds, n, t); });
}

__attribute__((visibility("default"))) int epoll_wait(int epfd, struct epoll_event* events, int max,
                                                      int timeout) {
  return waitWithTimeout(timeout, [&](int t) { return MIG_REAL(epoll_wait)(epfd, events, max, t); });
}

__attribute__((visibility("default"))) int select(int n, fd_set* r, fd_set* w, fd_set* e,
                                                  struct timeval* timeout) {
  // The sets are rewritten by the kernel only on success; Linux updates *timeout to
  // the time left, also when interrupted, so a retry waits only what remains.
  fd_set r0, w0, e0;
  if (r) r0 = *r;
  if (w) w0 = *w;
  if (e) e0 = *e;
  for (;;) {
    t_checkpointInterrupted = 0;
    int ret = MIG_REAL(select)(n, r, w, e, timeout);
    if (ret >= 0 || !checkpointEintr(errno)) return ret;
    if (r) *r = r0;
    if (w) *w = w0;
    if (e) *e = e0;
  }
}

__attribute__((visibility("default"))) int pause(void) {
  for (;;) {
    t_checkpointInterrupted = 0;
    int r = MIG_REAL(pause)();
    if (!checkpointEintr(errno)) return r;
  }
}

__attribute__((visibility("default"))) int sigsuspend(const sigset_t* mask) {
  for (;;) {
    t_checkpointInterrupted = 0;
    int r = MIG_REAL(sigsuspend)(mask);
    if (!checkpointEintr(errno)) return r;
  }
}

}  // extern "C"
