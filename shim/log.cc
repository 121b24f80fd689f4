// See log.h.
#include "shim/log.h"

#include "shim/own_fds.h"
#include "shim/raw_syscall.h"

#include <cstdlib>
#include <fcntl.h>
#include <sys/syscall.h>

namespace mig::shim {
namespace {

// The fd stored + 1 (Runtime starts zeroed: 0 is "no log", not stdin).
void openAt(const char* path) {
  long fd = rawSyscall(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path),
                       O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;  // no log, and nothing said: the program's stderr is not ours
  fd = placeOwnFd(fd);
  g_runtime.logFd = static_cast<int>(fd) + 1;
}

}  // namespace

void openLog() {
  const char* path = getenv("MIG_LOG");
  if (path == nullptr || path[0] == '\0') return;
  size_t i = 0;
  for (; path[i] != '\0' && i + 1 < sizeof(g_runtime.logPath); ++i) g_runtime.logPath[i] = path[i];
  g_runtime.logPath[i] = '\0';
  if (path[i] != '\0') return;  // longer than we keep: no log rather than another file
  openAt(g_runtime.logPath);
}

void reopenLog() {
  g_runtime.logFd = 0;  // that number is not ours here
  t_ownLogFd = 0;       // nor the control thread's own (it shares the table again, restorer.cc)
  if (g_runtime.logPath[0] != '\0') openAt(g_runtime.logPath);
}

LogLine::LogLine() {
  *this << "mig shim " << static_cast<int64_t>(g_runtime.vpid) << " (here "
        << static_cast<int64_t>(rawSyscall(SYS_getpid)) << "): ";
}

LogLine::~LogLine() {
  if (n_ >= sizeof(buf_)) n_ = sizeof(buf_) - 1;
  buf_[n_++] = '\n';
  const int fd = (t_ownLogFd != 0 ? t_ownLogFd : g_runtime.logFd) - 1;
  if (fd >= 0) rawSyscall(SYS_write, fd, reinterpret_cast<long>(buf_), n_);
}

LogLine& LogLine::operator<<(const char* s) {
  if (s == nullptr) s = "(null)";
  while (*s != '\0' && n_ + 1 < sizeof(buf_)) buf_[n_++] = *s++;
  return *this;
}

LogLine& LogLine::operator<<(int64_t v) {
  char digits[24];
  int k = 0;
  uint64_t u = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  do digits[k++] = static_cast<char>('0' + u % 10);
  while ((u /= 10) != 0);
  if (v < 0 && n_ + 1 < sizeof(buf_)) buf_[n_++] = '-';
  while (k > 0 && n_ + 1 < sizeof(buf_)) buf_[n_++] = digits[--k];
  return *this;
}

}  // namespace mig::shim
