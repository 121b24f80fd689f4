// See restart_events.h.
//
// What comes back exactly and what cannot:
// - eventfd: counter and EFD_SEMAPHORE exactly.
// - timerfd: the time left and the period are relative to the restore (time spent
//   checkpointed does not count, as for the process's sleeps), except an absolute
//   timer on CLOCK_REALTIME[_ALARM], which keeps its date. Expirations not yet read
//   are put back with TFD_IOC_SET_TICKS (a CONFIG_CHECKPOINT_RESTORE ioctl); where
//   the kernel lacks it, the timer expires at once instead (the count collapses to
//   1, a periodic timer's phase moves) and a warning says so.
// - signalfd: its mask; the signals it reads are the process's pending signals,
//   which the restorer queues again.
// - epoll: every registration with its events and data. A oneshot registration that
//   already fired is made to fire again here so it comes back disarmed. What epoll
//   does not show cannot be restored: an edge-triggered registration whose target is
//   ready reports that edge once more after the restore, even if the process had
//   already taken it (correct edge-triggered code reads until EAGAIN and copes).
#include "migctl/restart_events.h"

#include "image/image_error.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <map>
#include <set>
#include <string>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <vector>

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

namespace mig::migctl {

using image::fail;
using image::schema::FileDescriptor;
using K = image::schema::FileDescriptor::Kind;

namespace {

constexpr int64_t kNsPerSec = 1000000000;
// The event bits epoll keeps of a oneshot registration once it fired (EP_PRIVATE_BITS).
constexpr uint32_t kFlagBits = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE;
constexpr uint32_t kAllPollBits = EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDNORM | EPOLLRDBAND | EPOLLWRNORM |
                                  EPOLLWRBAND | EPOLLMSG | EPOLLRDHUP | EPOLLERR | EPOLLHUP;

int nonblock(FileDescriptor::Reader f) { return (f.getFlags() & O_NONBLOCK) ? O_NONBLOCK : 0; }

struct timespec toTimespec(int64_t ns) {
  return {static_cast<time_t>(ns / kNsPerSec), static_cast<long>(ns % kNsPerSec)};
}

int64_t clockNs(clockid_t clock) {
  struct timespec ts {};
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

int createEventfd(FileDescriptor::Reader f) {
  int fd = eventfd(0, nonblock(f) | (f.getEventSemaphore() ? EFD_SEMAPHORE : 0));
  if (fd < 0) fail(kj::str("cannot recreate eventfd fd ", f.getFd(), ": ", strerror(errno)));
  // eventfd() takes an unsigned int; a write adds any counter value up to 2^64-2.
  uint64_t count = f.getEventCount();
  if (count > 0 && write(fd, &count, sizeof(count)) != static_cast<ssize_t>(sizeof(count))) {
    fail(kj::str("cannot set the counter of eventfd fd ", f.getFd(), " to ", count, ": ", strerror(errno)));
  }
  return fd;
}

int createTimerfd(FileDescriptor::Reader f, int warnFd) {
  auto t = f.getTimer();
  clockid_t clock = t.getClockid();
  int fd = timerfd_create(clock, nonblock(f));
  if (fd < 0) {
    fail(kj::str("cannot recreate timerfd fd ", f.getFd(), " on clock ", clock, ": ", strerror(errno),
                 errno == EPERM ? " (alarm clocks need CAP_WAKE_ALARM)" : ""));
  }
  struct itimerspec its {};
  its.it_interval = toTimespec(t.getIntervalNs());
  // The saved flags even for a disarmed timer: they show in its fdinfo.
  int flags = static_cast<int>(t.getSettimeFlags());
  if (t.getValueNs() > 0) {
    if (flags & TFD_TIMER_ABSTIME) {
      its.it_value = toTimespec(t.getDeadlineNs() > 0 ? t.getDeadlineNs() : clockNs(clock) + t.getValueNs());
    } else {
      its.it_value = toTimespec(t.getValueNs());
    }
  }
  if (timerfd_settime(fd, flags, &its, nullptr) != 0) {
    fail(kj::str("cannot arm timerfd fd ", f.getFd(), ": ", strerror(errno)));
  }
  uint64_t ticks = t.getTicks();
  if (ticks > 0 && ioctl(fd, TFD_IOC_SET_TICKS, &ticks) != 0) {
    int err = errno;
    its.it_value = {0, 1};
    if (timerfd_settime(fd, 0, &its, nullptr) != 0) {
      fail(kj::str("cannot arm timerfd fd ", f.getFd(), ": ", strerror(errno)));
    }
    dprintf(warnFd,
            "migctl restart: timerfd fd %d had %llu unread expirations; this kernel cannot set them "
            "(TFD_IOC_SET_TICKS: %s), so it expires once now\n",
            f.getFd(), static_cast<unsigned long long>(ticks), strerror(err));
  }
  return fd;
}

int createSignalfd(FileDescriptor::Reader f) {
  // The raw call takes all 64 signals; glibc's sigset helpers refuse its own (32, 33).
  uint64_t mask = f.getSigmask();
  int fd = static_cast<int>(syscall(SYS_signalfd4, -1, &mask, sizeof(mask), nonblock(f)));
  if (fd < 0) fail(kj::str("cannot recreate signalfd fd ", f.getFd(), ": ", strerror(errno)));
  return fd;
}

std::string describe(int fd) {
  char buf[256];
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = readlink(link.c_str(), buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
}

class EpollRestorer {
 public:
  EpollRestorer(kj::ArrayPtr<const FileDescriptor::Reader> fds, const forward::Config* migrated, int warnFd)
      : migrated_(migrated), warnFd_(warnFd) {
    for (auto f : fds) byFd_.emplace(f.getFd(), f);
  }

  void run() {
    for (auto& [fd, f] : byFd_) {
      if (f.getKind() == K::EPOLL && f.getDupOf() < 0) visit(fd);
    }
  }

 private:
  const forward::Config* migrated_;
  int warnFd_;
  std::map<int, FileDescriptor::Reader> byFd_;
  std::set<int> done_, visiting_;

  // The record holding the epoll state that fd `fd` refers to, or null if no epoll.
  const FileDescriptor::Reader* epollAt(int fd) const {
    auto it = byFd_.find(fd);
    if (it == byFd_.end() || it->second.getKind() != K::EPOLL) return nullptr;
    if (it->second.getDupOf() >= 0) it = byFd_.find(it->second.getDupOf());
    return it == byFd_.end() ? nullptr : &it->second;
  }

  // Epolls an epoll watches get their registrations first, so it sees them as they were.
  void visit(int efd) {
    if (done_.count(efd) > 0) return;
    if (!visiting_.insert(efd).second) fail(kj::str("the image's epoll fds watch each other in a loop (fd ", efd, ")"));
    const FileDescriptor::Reader& e = byFd_.at(efd);
    for (auto t : e.getEpollTargets()) {
      if (const FileDescriptor::Reader* inner = epollAt(t.getFd())) visit(inner->getFd());
    }
    restore(e);
    visiting_.erase(efd);
    done_.insert(efd);
  }

  bool homeFd(int fd) const {
    return migrated_ != nullptr && fd >= 0 && static_cast<uint32_t>(fd) < forward::kMaxFds &&
           (migrated_->forwardedFds[fd / 64] & (1ull << (fd % 64))) != 0;
  }

  // EPOLL_CTL_ADD; false (with a warning) when the target cannot be watched here.
  bool add(int efd, int tfd, uint32_t events, uint64_t data) {
    // A home fd's stand-in is watched in its place: its readiness follows the fd at
    // home (shim/forward/readiness_stand_in.h).
    struct epoll_event ev {};
    ev.events = events;
    ev.data.u64 = data;
    if (epoll_ctl(efd, EPOLL_CTL_ADD, tfd, &ev) == 0) return true;
    if (errno == EPERM && homeFd(tfd)) {
      dprintf(warnFd_, "migctl restart: epoll fd %d no longer watches fd %d: it stays at home, and its stand-in "
                       "here cannot tell readiness (the relay could not be reached)\n", efd, tfd);
      return false;
    }
    if (errno == EPERM) {
      dprintf(warnFd_, "migctl restart: epoll fd %d no longer watches fd %d: here fd %d is %s, which epoll "
                       "cannot watch\n", efd, tfd, tfd, describe(tfd).c_str());
      return false;
    }
    fail(kj::str("cannot restore epoll fd ", efd, "'s registration of fd ", tfd, " (", describe(tfd).c_str(),
                 "): ", strerror(errno)));
  }

  void restore(FileDescriptor::Reader e) {
    int efd = e.getFd();
    auto spent = [](uint32_t events) { return (events & EPOLLONESHOT) && (events & ~kFlagBits) == 0; };
    // Oneshot registrations that fired first, each alone on the ready list: epoll has
    // no call that disarms one, so add it armed for anything and let it fire.
    for (auto t : e.getEpollTargets()) {
      if (!spent(t.getEvents()) || !add(efd, t.getFd(), t.getEvents() | kAllPollBits, t.getData())) continue;
      struct epoll_event ev {};
      int n = epoll_wait(efd, &ev, 1, 0);
      if (n == 1) continue;  // fired: disarmed, as it was
      // Nothing to report on the target: the closest the kernel allows (a registration
      // always keeps EPOLLERR|EPOLLHUP).
      ev.events = t.getEvents();
      ev.data.u64 = t.getData();
      if (epoll_ctl(efd, EPOLL_CTL_MOD, t.getFd(), &ev) != 0) {
        fail(kj::str("cannot restore epoll fd ", efd, "'s oneshot registration of fd ", t.getFd(), ": ", strerror(errno)));
      }
    }
    for (auto t : e.getEpollTargets()) {
      if (!spent(t.getEvents())) add(efd, t.getFd(), t.getEvents(), t.getData());
    }
  }
};

}  // namespace

bool isEventKind(K kind) {
  return kind == K::EVENTFD || kind == K::TIMERFD || kind == K::SIGNALFD || kind == K::EPOLL;
}

int createEventObject(FileDescriptor::Reader f, int warnFd) {
  switch (f.getKind()) {
    case K::EVENTFD: return createEventfd(f);
    case K::TIMERFD: return createTimerfd(f, warnFd);
    case K::SIGNALFD: return createSignalfd(f);
    case K::EPOLL: {
      int fd = epoll_create1(0);
      if (fd < 0) fail(kj::str("cannot recreate epoll fd ", f.getFd(), ": ", strerror(errno)));
      if (nonblock(f) != 0) fcntl(fd, F_SETFL, O_NONBLOCK);  // nothing for epoll_wait, seen by F_GETFL
      return fd;
    }
    default: fail(kj::str("fd ", f.getFd(), " is not an event-loop object"));
  }
}

void restoreEpollRegistrations(kj::ArrayPtr<const FileDescriptor::Reader> fds, const forward::Config* migrated,
                               int warnFd) {
  EpollRestorer(fds, migrated, warnFd).run();
}

}  // namespace mig::migctl
