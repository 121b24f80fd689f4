// timerfd_create(2): saved as its clock, time left, period, unread expirations and
// settime flags (fdinfo, made exact by timerfd_gettime: fs/timerfd.c's
// timerfd_show). The time left and the period are relative to the restore (time
// spent checkpointed does not count, as for the process's sleeps), except an
// absolute timer on CLOCK_REALTIME[_ALARM], which keeps its date. Unread expirations
// are put back with TFD_IOC_SET_TICKS (a CONFIG_CHECKPOINT_RESTORE ioctl); where the
// kernel lacks it, the timer expires at once instead (the count collapses to 1, a
// periodic timer's phase moves) and a warning says so. A local kernel object: on
// migration it is made anew on the new host.
#include "resources/timerfd.h"

#include "image/image_error.h"
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"
#include "resources/proc_file.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

namespace mig::resources {
namespace {

constexpr int64_t kNsPerSec = 1000000000;

// "(SECONDS, NANOSECONDS)", as timerfd prints an itimerspec member.
bool timespecField(std::string_view text, std::string_view name, int64_t& ns) {
  std::string_view v;
  uint64_t sec = 0, nsec = 0;
  if (!field(text, name, v) || !fdinfo::literal(v, "(") || !fdinfo::number(v, 10, sec) || !fdinfo::literal(v, ",") ||
      !fdinfo::number(v, 10, nsec) || !fdinfo::literal(v, ")")) {
    return false;
  }
  if (nsec >= static_cast<uint64_t>(kNsPerSec) || sec > static_cast<uint64_t>(INT64_MAX / kNsPerSec - 1)) return false;
  ns = static_cast<int64_t>(sec) * kNsPerSec + static_cast<int64_t>(nsec);
  return true;
}

}  // namespace

namespace timerfd {

const char* parse(std::string_view text, Info& out) {
  if (!fdinfo::numberField(text, "clockid", 10, out.clockid)) return "no readable clockid line";
  if (!fdinfo::numberField(text, "ticks", 10, out.ticks)) return "no readable ticks line";
  if (!fdinfo::numberField(text, "settime flags", 8, out.settimeFlags)) return "no readable 'settime flags' line";
  if (!timespecField(text, "it_value", out.valueNs)) return "no readable it_value line";
  if (!timespecField(text, "it_interval", out.intervalNs)) return "no readable it_interval line";
  return nullptr;
}

}  // namespace timerfd

namespace {

int64_t clockNs(clockid_t clock) {
  struct timespec ts {};
  if (clock_gettime(clock, &ts) != 0) clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

struct timespec toTimespec(int64_t ns) {
  return {static_cast<time_t>(ns / kNsPerSec), static_cast<long>(ns % kNsPerSec)};
}

// A copy of the process's fd in ours (pidfd_getfd needs ptrace rights over it).
kj::AutoCloseFd borrowFd(pid_t pid, int fd) {
  kj::AutoCloseFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd == nullptr) return nullptr;
  return kj::AutoCloseFd(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
}

bool matches(const FdProbe& p, const CaptureContext&) { return p.target == "anon_inode:[timerfd]"; }

void capture(const FdProbe& p, const CaptureContext& ctx, FdRecord::Builder out) {
  // fdinfo does not bring a periodic timer that expired up to date (it shows
  // it_value 0 and one tick however many periods went by); timerfd_gettime does,
  // as a read would, without consuming anything. So call it on a copy of the fd.
  kj::AutoCloseFd copy = borrowFd(ctx.pid, p.fd);
  timerfd::Info t;
  for (int attempt = 0;; ++attempt) {
    if (copy != nullptr) {
      struct itimerspec now {};
      timerfd_gettime(copy, &now);
    }
    if (const char* why = timerfd::parse(fdinfo::read(ctx.pid, p.fd), t)) fdinfo::unreadable(ctx.pid, p.fd, "timerfd", why);
    bool stale = t.valueNs == 0 && t.intervalNs > 0 && t.ticks > 0;  // expired, not yet forwarded
    if (!stale || copy == nullptr || attempt == 3) {
      // Without the copy the next expiration is unknown: at most a period away.
      if (stale) t.valueNs = t.intervalNs;
      break;
    }
  }
  auto timer = out.getTimerfd().initTimer();
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

void check(FdRecord::Reader f, const CheckContext& ctx) {
  auto timer = f.getTimerfd().getTimer();
  if (timer.getValueNs() < 0 || timer.getIntervalNs() < 0 || timer.getDeadlineNs() < 0) {
    invalidRecord(ctx, kj::str("fd ", f.getFd(), " has a negative timer"));
  }
}

void restore(FdRecord::Reader f, RestoreContext& ctx) {
  auto t = f.getTimerfd().getTimer();
  clockid_t clock = t.getClockid();
  kj::AutoCloseFd fd(timerfd_create(clock, (f.getFlags() & O_NONBLOCK) ? TFD_NONBLOCK : 0));
  if (fd == nullptr) {
    image::fail(kj::str("cannot recreate timerfd fd ", f.getFd(), " on clock ", clock, ": ", strerror(errno),
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
    image::fail(kj::str("cannot arm timerfd fd ", f.getFd(), ": ", strerror(errno)));
  }
  uint64_t ticks = t.getTicks();
  if (ticks > 0 && ioctl(fd, TFD_IOC_SET_TICKS, &ticks) != 0) {
    int err = errno;
    its.it_value = {0, 1};
    if (timerfd_settime(fd, 0, &its, nullptr) != 0) {
      image::fail(kj::str("cannot arm timerfd fd ", f.getFd(), ": ", strerror(errno)));
    }
    dprintf(ctx.warnFd,
            "migctl restart: timerfd fd %d had %llu unread expirations; this kernel cannot set them "
            "(TFD_IOC_SET_TICKS: %s), so it expires once now\n",
            f.getFd(), static_cast<unsigned long long>(ticks), strerror(err));
  }
  placeAt(kj::mv(fd), f.getFd());
}

}  // namespace

extern const FdKind kTimerfd = {
    .kind = FdRecord::Kind::TIMERFD,
    .name = "timerfd",
    .onMigration = OnMigration::recreated,
    .matches = matches,
    .capture = capture,
    .check = check,
    .restore = restore,
};

}  // namespace mig::resources
