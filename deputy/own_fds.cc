// See own_fds.h.
#include "deputy/own_fds.h"

#include "shim/forward/forward_config.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace mig::deputy {
namespace {

// Numbers the deputy marks: up to 2^20, the kernel's default fs.nr_open; a deputy fd
// above it is out of every job's reach anyway.
constexpr int kTracked = 1 << 20;
std::atomic<uint64_t> g_own[kTracked / 64];

// Room the deputy keeps for itself at the top of a shared table: the event loop, the
// connection to shadowd and a few watches (more watches take more, from the top down).
constexpr int kOwnBand = 64;

int g_jobTop = 0;   // the job's numbers are below this (its hard limit, or kMaxFds)
int g_hard = 0;     // the deputy's limit (soft raised to hard)
bool g_shared = false;  // no room above the job's numbers: top-down placement

}  // namespace

void planFdSpace() {
  struct rlimit lim {};
  getrlimit(RLIMIT_NOFILE, &lim);
  // The job may raise its soft limit where it runs, up to this hard one.
  const rlim_t jobHard = lim.rlim_max;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  const rlim_t cap = static_cast<rlim_t>(kTracked);
  g_hard = static_cast<int>(std::min(lim.rlim_cur, cap));
  g_jobTop = static_cast<int>(std::min<rlim_t>(jobHard, forward::kMaxFds));
  g_shared = g_hard < g_jobTop + kOwnBand;
}

int lowestOwn() { return g_shared ? std::max(0, g_hard - kOwnBand) : g_jobTop; }

int placeOwn(int fd) {
  int placed = -1;
  if (!g_shared) {
    placed = fcntl(fd, F_DUPFD_CLOEXEC, g_jobTop);
  } else {
    // The highest free number: F_DUPFD gives the lowest free one at or above its
    // argument, so the first argument from the top that succeeds is it.
    for (int floor = g_hard - 1; floor >= 0 && placed < 0; --floor) {
      placed = fcntl(fd, F_DUPFD_CLOEXEC, floor);
      if (placed < 0 && errno != EMFILE && errno != EINVAL) break;
    }
  }
  const int saved = errno;
  close(fd);
  if (placed < 0) {
    errno = saved;
    return -1;
  }
  markOwn(placed, true);
  return placed;
}

void markOpenFdsOwn(const int* before, int count) {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return;
  const int self = dirfd(d);
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const int fd = atoi(e->d_name);
    if (fd == self || std::binary_search(before, before + count, fd)) continue;
    markOwn(fd, true);
  }
  closedir(d);
}

void markOwn(int fd, bool own) {
  if (fd < 0 || fd >= kTracked) return;
  const uint64_t bit = uint64_t{1} << (fd % 64);
  if (own) g_own[fd / 64].fetch_or(bit, std::memory_order_acq_rel);
  else g_own[fd / 64].fetch_and(~bit, std::memory_order_acq_rel);
}

bool isOwn(int64_t fd) {
  if (fd < 0 || fd >= kTracked) return false;
  return (g_own[fd / 64].load(std::memory_order_acquire) >> (fd % 64)) & 1;
}

}  // namespace mig::deputy
