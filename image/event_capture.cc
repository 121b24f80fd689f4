// See event_capture.h.
#include "image/event_capture.h"

#include "image/fdinfo.h"
#include "image/image_error.h"
#include "image/proc_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <map>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

namespace mig::image {
namespace {

using K = schema::FileDescriptor::Kind;
constexpr int64_t kNsPerSec = 1000000000;

std::string readFdinfo(pid_t pid, int fd) { return readProcFile(pid, "fdinfo/" + std::to_string(fd)); }

[[noreturn]] void unreadable(pid_t pid, int fd, const char* what, const char* why) {
  fail(kj::str("cannot checkpoint ", what, " fd ", fd, ": /proc/", pid, "/fdinfo/", fd, " has ", why,
               " (a kernel whose format mig does not know?)"));
}

int64_t clockNs(clockid_t clock) {
  struct timespec ts {};
  if (clock_gettime(clock, &ts) != 0) clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

// A copy of the process's fd in ours (pidfd_getfd needs ptrace rights over it), or -1.
int borrowFd(pid_t pid, int fd) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return -1;
  int copy = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0));
  ::close(pidfd);
  return copy;
}

void captureEventfd(pid_t pid, int fd, schema::FileDescriptor::Builder out) {
  fdinfo::Eventfd e;
  if (const char* why = fdinfo::parseEventfd(readFdinfo(pid, fd), e)) unreadable(pid, fd, "eventfd", why);
  out.setEventCount(e.count);
  out.setEventSemaphore(e.semaphore);
}

void captureTimerfd(pid_t pid, int fd, schema::FileDescriptor::Builder out) {
  // fdinfo does not bring a periodic timer that expired up to date (it shows
  // it_value 0 and one tick however many periods went by); timerfd_gettime does,
  // as a read would, without consuming anything. So call it on a copy of the fd.
  int copy = borrowFd(pid, fd);
  fdinfo::Timerfd t;
  for (int attempt = 0;; ++attempt) {
    if (copy >= 0) {
      struct itimerspec now {};
      timerfd_gettime(copy, &now);
    }
    if (const char* why = fdinfo::parseTimerfd(readFdinfo(pid, fd), t)) {
      if (copy >= 0) ::close(copy);
      unreadable(pid, fd, "timerfd", why);
    }
    bool stale = t.valueNs == 0 && t.intervalNs > 0 && t.ticks > 0;  // expired, not yet forwarded
    if (!stale || copy < 0 || attempt == 3) {
      // Without the copy the next expiration is unknown: at most a period away.
      if (stale) t.valueNs = t.intervalNs;
      break;
    }
  }
  if (copy >= 0) ::close(copy);
  auto timer = out.initTimer();
  timer.setClockid(t.clockid);
  timer.setValueNs(t.valueNs);
  timer.setIntervalNs(t.intervalNs);
  timer.setTicks(t.ticks);
  timer.setSettimeFlags(t.settimeFlags);
  // An absolute timer on a wall clock keeps its date; every other timer keeps the
  // time it had left (frozen time does not count, as for the process's sleeps).
  bool wall = t.clockid == CLOCK_REALTIME || t.clockid == CLOCK_REALTIME_ALARM;
  if (wall && (t.settimeFlags & TFD_TIMER_ABSTIME) && t.valueNs > 0) {
    timer.setDeadlineNs(clockNs(t.clockid) + t.valueNs);
  }
}

void captureSignalfd(pid_t pid, int fd, schema::FileDescriptor::Builder out) {
  uint64_t mask = 0;
  if (const char* why = fdinfo::parseSignalfd(readFdinfo(pid, fd), mask)) unreadable(pid, fd, "signalfd", why);
  out.setSigmask(mask);
}

// Is the file registered in epoll `efd` under `tfd` (the `toff`-th registration
// under that number) the file the process has at fd `tfd` now?
bool sameTarget(pid_t pid, int efd, const fdinfo::EpollItem& item, uint32_t toff) {
  struct kcmp_epoll_slot slot = {static_cast<__u32>(efd), static_cast<__u32>(item.fd), toff};
  long r = syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, item.fd, reinterpret_cast<unsigned long>(&slot));
  if (r >= 0) return r == 0;
  if (errno != ENOSYS && errno != EOPNOTSUPP && errno != EINVAL) return false;
  // No kcmp here: the same inode on the same file system will do.
  struct stat st {};
  std::string link = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(item.fd);
  return stat(link.c_str(), &st) == 0 && st.st_ino == item.ino && st.st_dev == fdinfo::kernelDevToUser(item.sdev);
}

void captureEpoll(pid_t pid, int fd, const std::vector<int>& processFds, schema::FileDescriptor::Builder out) {
  std::vector<fdinfo::EpollItem> items;
  if (const char* why = fdinfo::parseEpoll(readFdinfo(pid, fd), items)) unreadable(pid, fd, "epoll", why);
  auto list = out.initEpollTargets(static_cast<uint32_t>(items.size()));
  std::map<int, uint32_t> seen;  // registrations so far under each fd number
  for (size_t i = 0; i < items.size(); ++i) {
    const fdinfo::EpollItem& item = items[i];
    uint32_t toff = seen[item.fd]++;
    bool open = std::binary_search(processFds.begin(), processFds.end(), item.fd);
    if (!open || !sameTarget(pid, fd, item, toff)) {
      // The file is still open somewhere (else the kernel would have dropped the
      // registration), but not at the number it was registered under, which is the
      // only name a restore can register it by.
      fail(kj::str("cannot checkpoint: epoll fd ", fd, " watches a file registered as fd ", item.fd, ", which ",
                   open ? "is now another file" : "the process has closed",
                   " (the file lives on elsewhere); mig cannot restore such a registration"));
    }
    list[i].setFd(item.fd);
    list[i].setEvents(item.events);
    list[i].setData(item.data);
  }
}

}  // namespace

bool eventKindOf(const std::string& target, schema::FileDescriptor::Kind& kind) {
  if (target == "anon_inode:[eventfd]") kind = K::EVENTFD;
  else if (target == "anon_inode:[timerfd]") kind = K::TIMERFD;
  else if (target == "anon_inode:[signalfd]") kind = K::SIGNALFD;
  else if (target == "anon_inode:[eventpoll]") kind = K::EPOLL;
  else return false;
  return true;
}

void captureEventObject(pid_t pid, const std::vector<int>& processFds, schema::FileDescriptor::Builder out) {
  int fd = out.getFd();
  switch (out.getKind()) {
    case K::EVENTFD: return captureEventfd(pid, fd, out);
    case K::TIMERFD: return captureTimerfd(pid, fd, out);
    case K::SIGNALFD: return captureSignalfd(pid, fd, out);
    case K::EPOLL: return captureEpoll(pid, fd, processFds, out);
    default: fail(kj::str("fd ", fd, " is not an event-loop object"));
  }
}

}  // namespace mig::image
