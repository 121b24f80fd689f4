// epoll instances: every registration is saved with its events and data (fdinfo's
// "tfd:" lines, fs/eventpoll.c's ep_show_fdinfo) and registered again once every fd
// of the image is at its number. A oneshot registration that already fired is made
// to fire again here so it comes back disarmed. What epoll does not show cannot be
// restored: an edge-triggered registration whose target is ready reports that edge
// once more after the restore, even if the process had already taken it (correct
// edge-triggered code reads until EAGAIN and copes). A registration must name the
// file under the number the process has it at now, or the checkpoint is refused.
// A local kernel object: on migration it is made anew on the new host, and a target
// that stays at home is watched through its readiness stand-in.
#include "resources/epoll.h"

#include "image/image_error.h"
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"
#include "resources/proc_file.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <map>
#include <set>
#include <string>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

namespace mig::resources {
namespace epoll {

const char* parse(std::string_view text, std::vector<Item>& out) {
  // "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x", one per registration.
  out.clear();
  const bool whole = forEachLine(text, [&](std::string_view line) {
    if (line.substr(0, 4) != "tfd:") return true;
    line.remove_prefix(4);
    Item item;
    int64_t pos = 0;
    using fdinfo::literal;
    using fdinfo::number;
    bool ok = number(line, 10, item.fd) && literal(line, "events:") && number(line, 16, item.events) &&
              literal(line, "data:") && number(line, 16, item.data) && literal(line, "pos:");
    ok = ok && number(line, 10, pos);  // signed ("%lli"); from_chars takes the '-'
    ok = ok && literal(line, "ino:") && number(line, 16, item.ino) && literal(line, "sdev:") &&
         number(line, 16, item.sdev);
    if (!ok || item.fd < 0) return false;
    out.push_back(item);
    return true;
  });
  return whole ? nullptr : "an unreadable tfd line";
}

uint64_t kernelDevToUser(uint64_t kdev) {
  // include/linux/kdev_t.h: MINORBITS 20.
  return makedev(static_cast<unsigned>(kdev >> 20), static_cast<unsigned>(kdev & 0xfffff));
}

}  // namespace epoll

namespace {

// The event bits epoll keeps of a oneshot registration once it fired (EP_PRIVATE_BITS).
constexpr uint32_t kFlagBits = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE;
constexpr uint32_t kAllPollBits = EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDNORM | EPOLLRDBAND | EPOLLWRNORM |
                                  EPOLLWRBAND | EPOLLMSG | EPOLLRDHUP | EPOLLERR | EPOLLHUP;

bool matches(const FdProbe& p, const CaptureContext&) { return p.target == "anon_inode:[eventpoll]"; }

// Is the file registered in epoll `efd` under `tfd` (the `toff`-th registration
// under that number) the file the process has at fd `tfd` now?
bool sameTarget(pid_t pid, int efd, const epoll::Item& item, uint32_t toff) {
  struct kcmp_epoll_slot slot = {static_cast<__u32>(efd), static_cast<__u32>(item.fd), toff};
  long r = syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, item.fd, reinterpret_cast<unsigned long>(&slot));
  if (r >= 0) return r == 0;
  if (errno != ENOSYS && errno != EOPNOTSUPP && errno != EINVAL) return false;
  // No kcmp here: the same inode on the same file system will do.
  struct stat st {};
  std::string link = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(item.fd);
  return stat(link.c_str(), &st) == 0 && st.st_ino == item.ino && st.st_dev == epoll::kernelDevToUser(item.sdev);
}

void capture(const FdProbe& p, const CaptureContext& ctx, FdRecord::Builder out) {
  const int fd = p.fd;
  std::vector<epoll::Item> items;
  if (const char* why = epoll::parse(fdinfo::read(ctx.pid, fd), items)) fdinfo::unreadable(ctx.pid, fd, "epoll", why);
  auto list = out.getEpoll().initTargets(static_cast<uint32_t>(items.size()));
  std::map<int, uint32_t> seen;  // registrations so far under each fd number
  for (size_t i = 0; i < items.size(); ++i) {
    const epoll::Item& item = items[i];
    uint32_t toff = seen[item.fd]++;
    auto at = std::lower_bound(ctx.all.begin(), ctx.all.end(), item.fd,
                               [](const FdProbe& o, int n) { return o.fd < n; });  // ctx.all is sorted
    bool open = at != ctx.all.end() && at->fd == item.fd;
    if (!open || !sameTarget(ctx.pid, fd, item, toff)) {
      // The file is still open somewhere (else the kernel would have dropped the
      // registration), but not at the number it was registered under, which is the
      // only name a restore can register it by.
      image::fail(kj::str("cannot checkpoint: epoll fd ", fd, " watches a file registered as fd ", item.fd, ", which ",
                          open ? "is now another file" : "the process has closed",
                          " (the file lives on elsewhere); mig cannot restore such a registration"));
    }
    list[i].setFd(item.fd);
    list[i].setEvents(item.events);
    list[i].setData(item.data);
  }
}

// A registration names an fd of the image: the restore registers it by number.
void check(FdRecord::Reader f, const CheckContext& ctx) {
  for (auto t : f.getEpoll().getTargets()) {
    if (!std::binary_search(ctx.fds.begin(), ctx.fds.end(), t.getFd())) {
      invalidRecord(ctx, kj::str("epoll fd ", f.getFd(), " watches fd ", t.getFd(), ", which is not in the image"));
    }
  }
}

// Without its registrations yet: settle() adds them once their targets are in place.
void restore(FdRecord::Reader f, RestoreContext&) {
  kj::AutoCloseFd fd(epoll_create1(0));
  if (fd == nullptr) image::fail(kj::str("cannot recreate epoll fd ", f.getFd(), ": ", strerror(errno)));
  if (f.getFlags() & O_NONBLOCK) fcntl(fd, F_SETFL, O_NONBLOCK);  // nothing for epoll_wait, seen by F_GETFL
  placeAt(kj::mv(fd), f.getFd());
}

std::string describe(int fd) {
  char buf[256];
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = readlink(link.c_str(), buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
}

class EpollRestorer {
 public:
  EpollRestorer(kj::ArrayPtr<const FdRecord::Reader> fds, const forward::Config* migrated, int warnFd)
      : migrated_(migrated), warnFd_(warnFd) {
    for (auto f : fds) byFd_.emplace(f.getFd(), f);
  }

  void run() {
    for (auto& [fd, f] : byFd_) {
      if (f.getKind() == FdRecord::Kind::EPOLL && f.getDupOf() < 0) visit(fd);
    }
  }

 private:
  const forward::Config* migrated_;
  int warnFd_;
  std::map<int, FdRecord::Reader> byFd_;
  std::set<int> done_, visiting_;

  // The record holding the epoll state that fd `fd` refers to, or null if no epoll.
  const FdRecord::Reader* epollAt(int fd) const {
    auto it = byFd_.find(fd);
    if (it == byFd_.end() || it->second.getKind() != FdRecord::Kind::EPOLL) return nullptr;
    if (it->second.getDupOf() >= 0) it = byFd_.find(it->second.getDupOf());
    return it == byFd_.end() ? nullptr : &it->second;
  }

  // Epolls an epoll watches get their registrations first, so it sees them as they were.
  void visit(int efd) {
    if (done_.count(efd) > 0) return;
    if (!visiting_.insert(efd).second) image::fail(kj::str("the image's epoll fds watch each other in a loop (fd ", efd, ")"));
    const FdRecord::Reader& e = byFd_.at(efd);
    for (auto t : e.getEpoll().getTargets()) {
      if (const FdRecord::Reader* inner = epollAt(t.getFd())) visit(inner->getFd());
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
    image::fail(kj::str("cannot restore epoll fd ", efd, "'s registration of fd ", tfd, " (", describe(tfd).c_str(),
                 "): ", strerror(errno)));
  }

  void restore(FdRecord::Reader e) {
    int efd = e.getFd();
    auto spent = [](uint32_t events) { return (events & EPOLLONESHOT) && (events & ~kFlagBits) == 0; };
    // Oneshot registrations that fired first, each alone on the ready list: epoll has
    // no call that disarms one, so add it armed for anything and let it fire.
    for (auto t : e.getEpoll().getTargets()) {
      if (!spent(t.getEvents()) || !add(efd, t.getFd(), t.getEvents() | kAllPollBits, t.getData())) continue;
      struct epoll_event ev {};
      int n = epoll_wait(efd, &ev, 1, 0);
      if (n == 1) continue;  // fired: disarmed, as it was
      // Nothing to report on the target: the closest the kernel allows (a registration
      // always keeps EPOLLERR|EPOLLHUP).
      ev.events = t.getEvents();
      ev.data.u64 = t.getData();
      if (epoll_ctl(efd, EPOLL_CTL_MOD, t.getFd(), &ev) != 0) {
        image::fail(kj::str("cannot restore epoll fd ", efd, "'s oneshot registration of fd ", t.getFd(), ": ", strerror(errno)));
      }
    }
    for (auto t : e.getEpoll().getTargets()) {
      if (!spent(t.getEvents())) add(efd, t.getFd(), t.getEvents(), t.getData());
    }
  }
};

void settle(RestoreContext& ctx) { EpollRestorer(ctx.all, ctx.migrated, ctx.warnFd).run(); }

}  // namespace

extern const FdKind kEpoll = {
    .kind = FdRecord::Kind::EPOLL,
    .name = "epoll",
    .onMigration = OnMigration::recreated,
    .matches = matches,
    .capture = capture,
    .check = check,
    .restore = restore,
    .settle = settle,
};

}  // namespace mig::resources
