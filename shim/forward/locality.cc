// See locality.h. Async-signal-safe: plain loops over the application's string.
#include "shim/forward/locality.h"

#include "shim/forward/state.h"

#include <fcntl.h>

namespace mig::forward {
namespace {

// This host's own views of the kernel: what they show is about this host (and
// /proc/self about this very process), so they are never home paths.
constexpr const char* kHostViews[] = {"/proc", "/sys", "/dev"};

// Is `path` the directory `dir` or inside it? Trailing slashes of dir do not count;
// "/" contains everything.
bool inside(const char* path, const char* dir, uint32_t dirMax) {
  uint32_t n = 0;
  while (n < dirMax && dir[n] != '\0') ++n;
  if (n == dirMax || n == 0 || dir[0] != '/') return false;  // unterminated or not absolute
  while (n > 1 && dir[n - 1] == '/') --n;
  if (n == 1) return true;
  for (uint32_t i = 0; i < n; ++i) {
    if (path[i] != dir[i]) return false;
  }
  return path[n] == '\0' || path[n] == '/';
}

// A ".." component could lead out of a local directory: such paths are not trusted
// to be local (a lexical check only; symlinks are the user's business).
bool climbs(const char* p) {
  for (const char* c = p; *c != '\0'; ++c) {
    bool start = c == p || c[-1] == '/';
    if (start && c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == '\0')) return true;
  }
  return false;
}

// "PREFIX<digits>" at the start of path: the number, or -1.
int64_t numberAfter(const char* path, const char* prefix) {
  const char* p = path;
  for (const char* q = prefix; *q != '\0'; ++q, ++p) {
    if (*p != *q) return -1;
  }
  if (*p < '0' || *p > '9') return -1;
  int64_t n = 0;
  for (; *p >= '0' && *p <= '9' && n < (1 << 24); ++p) n = n * 10 + (*p - '0');
  return *p == '\0' ? n : -1;
}

bool equals(const char* a, const char* b) {
  for (; *a != '\0' && *a == *b; ++a, ++b) {
  }
  return *a == *b;
}

// The fd that a name of one of the process's own fds names, or -1.
int64_t ownFdName(const char* path) {
  if (equals(path, "/dev/stdin")) return 0;
  if (equals(path, "/dev/stdout")) return 1;
  if (equals(path, "/dev/stderr")) return 2;
  int64_t n = numberAfter(path, "/dev/fd/");
  if (n < 0) n = numberAfter(path, "/proc/self/fd/");
  if (n < 0) n = numberAfter(path, "/proc/thread-self/fd/");
  return n;
}

}  // namespace

bool pathIsHome(const State& s, int64_t dirfd, const char* path) {
  if (path == nullptr) return true;
  if (path[0] != '/') {
    if (static_cast<int32_t>(dirfd) == AT_FDCWD) return s.cwdLocal.load(std::memory_order_relaxed) == 0;
    return isForwardedFd(s, dirfd);
  }
  int64_t fd = ownFdName(path);
  if (fd >= 0) return isForwardedFd(s, fd);
  if (climbs(path)) return true;
  for (const char* view : kHostViews) {
    if (inside(path, view, 64)) return false;
  }
  uint32_t count = s.config.localPathCount < kMaxLocalPaths ? s.config.localPathCount : kMaxLocalPaths;
  for (uint32_t i = 0; i < count; ++i) {
    if (inside(path, s.config.localPaths[i], kPathMax)) return false;
  }
  return true;
}

}  // namespace mig::forward
