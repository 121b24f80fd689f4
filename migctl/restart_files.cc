// See restart_files.h.
#include "migctl/restart_files.h"

#include "image/image_error.h"
#include "migctl/restart_events.h"
#include "shim/forward/readiness_stand_in.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>
#include <sys/stat.h>
#include <unistd.h>

namespace mig::migctl {

using image::fail;
using image::schema::FileDescriptor;
using K = image::schema::FileDescriptor::Kind;

namespace {

int64_t mtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

void checkUnchanged(FileDescriptor::Reader f, bool force) {
  struct stat st {};
  if (stat(f.getPath().cStr(), &st) != 0) {
    fail(kj::str("file ", f.getPath(), " (fd ", f.getFd(), ") is missing: ", strerror(errno)));
  }
  if (force || S_ISDIR(st.st_mode)) return;
  if (st.st_ino != f.getInode() || st.st_dev != f.getDevice() ||
      static_cast<uint64_t>(st.st_size) != f.getSize() || mtimeNs(st) != f.getMtimeNs()) {
    fail(kj::str("file ", f.getPath(), " (fd ", f.getFd(),
                 ") changed since the checkpoint; restart with --force to use it as it is now"));
  }
}

// Moves `fd` to `target` (closing what was there) and returns target.
int place(int fd, int target) {
  if (fd == target) return fd;
  if (dup2(fd, target) < 0) fail(kj::str("cannot place fd ", target, ": ", strerror(errno)));
  close(fd);
  return target;
}

// The local stand-in of a home fd: one that tells readiness for sockets, pipes and
// terminals (event loops wait on them; it is always writable), /dev/null for files
// (always ready). Not close-on-exec: the restorer sets that as it was.
int homeStandIn(FileDescriptor::Reader f, const forward::Config& c, int warnFd) {
  if (f.getKind() == K::INHERITED) {
    long fd = forward::openReadinessStandIn(c, f.getFd(), 0);
    if (fd >= 0) return static_cast<int>(fd);
    dprintf(warnFd, "migctl restart: fd %d (%s) stays at home without readiness (poll and epoll on it will "
                    "not wake): cannot reach the relay: %s\n", f.getFd(), f.getPath().cStr(), strerror(static_cast<int>(-fd)));
  }
  return open("/dev/null", O_RDWR);
}

int openSaved(FileDescriptor::Reader f, const char* path) {
  uint32_t flags = f.getFlags() & ~static_cast<uint32_t>(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC);
  int fd = open(path, static_cast<int>(flags));
  if (fd < 0) fail(kj::str("cannot reopen ", f.getPath(), " for fd ", f.getFd(), ": ", strerror(errno)));
  return fd;
}

void seekSaved(int fd, FileDescriptor::Reader f) {
  if (lseek(fd, f.getOffset(), SEEK_SET) < 0 && errno != ESPIPE) {
    fail(kj::str("cannot restore the offset of fd ", f.getFd(), " (", f.getPath(), "): ", strerror(errno)));
  }
}

int recreateUnlinked(FileDescriptor::Reader f) {
  std::string path = f.getPath().cStr();
  std::string dir = path.substr(0, path.rfind('/') + 1);
  struct stat st {};
  if (dir.empty() || stat(dir.c_str(), &st) != 0) dir = "/tmp/";
  std::string tmpl = dir + ".mig-deleted-XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  int w = mkstemp(name.data());
  if (w < 0) fail(kj::str("cannot recreate deleted file ", f.getPath(), " in ", dir.c_str(), ": ", strerror(errno)));
  auto data = f.getContents();
  bool ok = write(w, data.begin(), data.size()) == static_cast<ssize_t>(data.size());
  close(w);
  int fd = ok ? openSaved(f, name.data()) : -1;
  unlink(name.data());
  if (!ok) fail(kj::str("cannot write the contents of deleted file ", f.getPath()));
  return fd;
}

}  // namespace

namespace {

kj::Vector<FileDescriptor::Reader> savedFds(image::FileReader& image) {
  kj::Vector<FileDescriptor::Reader> fds;
  for (size_t i = 0; i < image.sectionCount(); ++i) {
    if (image.section(i).type != static_cast<uint16_t>(image::SectionType::files)) continue;
    for (auto f : image.meta<image::schema::Files>(i).getFds()) fds.add(f);
  }
  return fds;
}

}  // namespace

void checkSavedFiles(image::FileReader& image, const FileRestoreOptions& options) {
  for (auto f : savedFds(image)) {
    if (f.getKind() == K::FILE && f.getDupOf() < 0) checkUnchanged(f, options.force);
  }
}

namespace {

// Moves our own fds that must survive above every saved fd number.
int moveAbove(kj::ArrayPtr<const FileDescriptor::Reader> fds, int* keep, size_t keepCount) {
  int maxFd = 2;
  for (auto f : fds) maxFd = std::max(maxFd, f.getFd());
  for (size_t i = 0; i < keepCount; ++i) {
    int moved = fcntl(keep[i], F_DUPFD, maxFd + 1);  // no FD_CLOEXEC: the restorer needs it
    if (moved < 0) fail(kj::str("cannot move an fd out of the way: ", strerror(errno)));
    close(keep[i]);
    keep[i] = moved;
  }
  return maxFd;
}

// Closes everything we hold but the saved numbers and `keep`.
void closeOthers(const std::set<int>& wanted, const int* keep, size_t keepCount) {
  DIR* d = opendir("/proc/self/fd");
  std::vector<int> extra;
  if (d != nullptr) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      int fd = atoi(e->d_name);
      bool kept = wanted.count(fd) > 0 || fd == dirfd(d);
      for (size_t i = 0; i < keepCount; ++i) kept = kept || keep[i] == fd;
      if (!kept) extra.push_back(fd);
    }
    closedir(d);
  }
  for (int fd : extra) close(fd);
}

}  // namespace

void restoreFiles(image::FileReader& image, int* keep, size_t keepCount, forward::Config* migrated) {
  kj::Vector<FileDescriptor::Reader> fds = savedFds(image);
  int maxFd = moveAbove(fds, keep, keepCount);
  // Warnings go to the stderr migctl was started with, not to whatever fd 2 becomes.
  int warnFd = fcntl(2, F_DUPFD_CLOEXEC, maxFd + 1);
  // One new pipe per saved pipe, both ends parked above every saved fd number.
  std::map<uint64_t, std::pair<int, int>> pipes;
  for (auto f : fds) {
    if (f.getKind() != K::PIPE || pipes.count(f.getPipeId()) > 0) continue;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) fail(kj::str("cannot create a pipe: ", strerror(errno)));
    int r = fcntl(p[0], F_DUPFD_CLOEXEC, maxFd + 1), w = fcntl(p[1], F_DUPFD_CLOEXEC, maxFd + 1);
    close(p[0]);
    close(p[1]);
    pipes[f.getPipeId()] = {r, w};
  }

  std::set<int> wanted;
  for (auto f : fds) {
    int target = f.getFd();
    wanted.insert(target);
    // A migrated job's fds stay at home, held by its deputy, except pipes whose both
    // ends it holds and event-loop objects: those are its own and come along.
    const bool home = migrated != nullptr && f.getKind() != K::PIPE && !isEventKind(f.getKind());
    if (home) {
      if (target < 0 || static_cast<uint32_t>(target) >= forward::kMaxFds) {
        fail(kj::str("fd ", target, " is beyond what a migrated job can forward (", forward::kMaxFds, ")"));
      }
      migrated->forwardedFds[target / 64] |= 1ull << (target % 64);
      if (f.getKind() == K::INHERITED) {
        migrated->streamFds[target / 64] |= 1ull << (target % 64);
        if (!(f.getFlags() & O_NONBLOCK)) migrated->pipelinedFds[target / 64] |= 1ull << (target % 64);
      }
    }
    if (f.getDupOf() >= 0) {
      if (dup2(f.getDupOf(), target) < 0) fail(kj::str("cannot duplicate fd ", f.getDupOf(), " as ", target));
      continue;
    }
    if (home) {
      place(homeStandIn(f, *migrated, warnFd), target);
      continue;
    }
    switch (f.getKind()) {
      case K::FILE:
      case K::DEVICE: {
        int fd = place(openSaved(f, f.getPath().cStr()), target);
        seekSaved(fd, f);
        break;
      }
      case K::UNLINKED: {
        int fd = place(recreateUnlinked(f), target);
        seekSaved(fd, f);
        break;
      }
      case K::PIPE: {
        auto& ends = pipes[f.getPipeId()];
        bool readEnd = (f.getFlags() & O_ACCMODE) == O_RDONLY;
        if (dup2(readEnd ? ends.first : ends.second, target) < 0) {
          fail(kj::str("cannot place pipe fd ", target, ": ", strerror(errno)));
        }
        fcntl(target, F_SETFL, f.getFlags() & O_NONBLOCK);
        auto data = f.getContents();
        if (readEnd && data.size() > 0 &&
            write(ends.second, data.begin(), data.size()) != static_cast<ssize_t>(data.size())) {
          fail(kj::str("cannot refill the pipe of fd ", target));
        }
        break;
      }
      case K::EVENTFD:
      case K::TIMERFD:
      case K::SIGNALFD:
      case K::EPOLL:
        place(createEventObject(f, warnFd), target);
        break;
      case K::INHERITED: {
        // Our own fd of that number stands in (the terminal or pipe migctl restart
        // runs with); without one, /dev/null keeps the number taken.
        if (fcntl(target, F_GETFD) >= 0) {
          fcntl(target, F_SETFD, 0);
        } else {
          place(open("/dev/null", O_RDWR), target);
          dprintf(warnFd, "migctl restart: fd %d (%s) cannot be restored here; it is /dev/null now\n",
                  target, f.getPath().cStr());
        }
        break;
      }
    }
  }
  // Every fd is in place: epolls can register their targets by number.
  restoreEpollRegistrations(fds.asPtr(), migrated, warnFd);
  // Close everything else we hold (also the parked pipe ends), except `keep`.
  closeOthers(wanted, keep, keepCount);
}

}  // namespace mig::migctl
