// See fd_restore.h.
#include "resources/fd_restore.h"

#include "image/image_error.h"
#include "resources/fd_kinds.h"
#include "resources/file_locks.h"
#include "shim/forward/readiness_stand_in.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <set>
#include <unistd.h>
#include <vector>

namespace mig::resources {

using image::fail;

namespace {

int g_restartMessages = STDERR_FILENO;

kj::Vector<FdRecord::Reader> savedFds(image::FileReader& image) {
  kj::Vector<FdRecord::Reader> fds;
  for (size_t i = 0; i < image.sectionCount(); ++i) {
    if (image.section(i).type != static_cast<uint16_t>(image::SectionType::files)) continue;
    for (auto f : image.meta<image::schema::Files>(i).getFds()) fds.add(f);
  }
  return fds;
}

// The local stand-in of a home fd: one that tells readiness for streams (event loops
// wait on them; it is always writable), /dev/null for files (always ready). Not
// close-on-exec: the restorer sets that as it was.
kj::AutoCloseFd homeStandIn(FdRecord::Reader f, const FdKind& kind, const forward::Config& c, int warnFd) {
  if (kind.onMigration == OnMigration::homeStream) {
    long fd = forward::openReadinessStandIn(c, f.getFd(), 0);
    if (fd >= 0) return kj::AutoCloseFd(static_cast<int>(fd));
    dprintf(warnFd, "migctl restart: fd %d (%s) stays at home without readiness (poll and epoll on it will "
                    "not wake): cannot reach the relay: %s\n", f.getFd(), f.getPath().cStr(), strerror(static_cast<int>(-fd)));
  }
  return kj::AutoCloseFd(open("/dev/null", O_RDWR));
}

// Marks a home fd forwarded (and stream, and pipelined for blocking streams and for
// files open for writing: forward::writesBehind).
void markHome(FdRecord::Reader f, const FdKind& kind, forward::Config& c) {
  int target = f.getFd();
  if (target < 0 || static_cast<uint32_t>(target) >= forward::kMaxFds) {
    fail(kj::str("fd ", target, " is beyond what a migrated job can forward (", forward::kMaxFds, ")"));
  }
  const uint64_t bit = 1ull << (target % 64);
  c.forwardedFds[target / 64] |= bit;
  if (kind.onMigration == OnMigration::homeStream) {
    c.streamFds[target / 64] |= bit;
    if (!(f.getFlags() & O_NONBLOCK)) c.pipelinedFds[target / 64] |= bit;
  } else if ((kind.kind == FdRecord::Kind::FILE || kind.kind == FdRecord::Kind::UNLINKED) &&
             forward::writesBehind(static_cast<int>(f.getFlags()))) {
    c.pipelinedFds[target / 64] |= bit;
  }
}

// Moves our own fds that must survive above every saved fd number.
int moveAbove(kj::ArrayPtr<const FdRecord::Reader> fds, int* keep, size_t keepCount) {
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

// Closes everything we hold but the saved numbers, `keep` and the fds from `heldFrom` up
// (when >= 0).
void closeOthers(const std::set<int>& wanted, const int* keep, size_t keepCount, int heldFrom) {
  DIR* d = opendir("/proc/self/fd");
  std::vector<int> extra;
  if (d != nullptr) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      int fd = atoi(e->d_name);
      bool kept = wanted.count(fd) > 0 || fd == dirfd(d) || (heldFrom >= 0 && fd >= heldFrom);
      for (size_t i = 0; i < keepCount; ++i) kept = kept || keep[i] == fd;
      if (!kept) extra.push_back(fd);
    }
    closedir(d);
  }
  for (int fd : extra) close(fd);
}

// Whether record `f` (a dup: the record it duplicates) is made here rather than held
// at home on migration: its kind is made anew, or, in a tree's restart, it moved with
// the tree (FdKind::movesWithTree).
bool madeHere(FdRecord::Reader f, const FdKind& kind, kj::ArrayPtr<const FdRecord::Reader> fds, bool tree) {
  if (kind.onMigration == OnMigration::recreated) return true;
  if (!tree || kind.movesWithTree == nullptr) return false;
  if (f.getDupOf() < 0) return kind.movesWithTree(f);
  for (auto o : fds) {
    if (o.getFd() == f.getDupOf() && o.getDupOf() < 0) return kind.movesWithTree(o);
  }
  return false;
}

}  // namespace

int restartMessages() { return g_restartMessages; }

void setRestartMessages(int fd) { g_restartMessages = fd; }

void checkSavedFiles(image::FileReader& image, const FileRestoreOptions& options) {
  kj::Vector<image::schema::Files::Reader> members;
  for (size_t i = 0; i < image.sectionCount(); ++i) {
    if (image.section(i).type != static_cast<uint16_t>(image::SectionType::files)) continue;
    checkFdRecords(image.meta<image::schema::Files>(i), image.section(i).describe(), options);
    members.add(image.meta<image::schema::Files>(i));
  }
  if (!options.migrated) file_locks::checkAcrossMembers(members);
}

void checkFdRecords(image::schema::Files::Reader files, kj::StringPtr section, const FileRestoreOptions& options) {
  std::vector<int32_t> numbers;
  for (auto f : files.getFds()) numbers.push_back(f.getFd());
  std::sort(numbers.begin(), numbers.end());
  CheckContext ctx{options.force, options.migrated, kj::arrayPtr(numbers.data(), numbers.size()), section};
  for (auto f : files.getFds()) {
    const FdKind& kind = kindOf(f.getKind());
    if (kind.check != nullptr) kind.check(f, ctx);
  }
  // A migrated job's locks stayed at home with its deputy.
  if (!options.migrated) file_locks::check(files);
}

void restoreFiles(image::FileReader& image, int* keep, size_t keepCount, const CallerFds& caller,
                  forward::Config* migrated, const TreePipes* treePipes, bool keepInherited, int heldFrom) {
  kj::Vector<FdRecord::Reader> saved = savedFds(image);
  kj::ArrayPtr<const FdRecord::Reader> fds = saved.asPtr();
  int maxFd = moveAbove(fds, keep, keepCount);
  // The restart's messages, out of the way of the job's fds before any is placed (fd 2
  // becomes the job's).
  int warn = fcntl(g_restartMessages, F_DUPFD_CLOEXEC, maxFd + 1);
  if (warn < 0 && errno == EBADF) {  // started without a stderr: nothing is said
    kj::AutoCloseFd null(open("/dev/null", O_WRONLY | O_CLOEXEC));
    warn = fcntl(null, F_DUPFD_CLOEXEC, maxFd + 1);
  }
  if (warn < 0) fail(kj::str("cannot move the restart's messages fd out of the way: ", strerror(errno)));
  if (g_restartMessages != STDERR_FILENO) close(g_restartMessages);
  g_restartMessages = warn;
  RestoreContext ctx{fds, maxFd, warn, migrated, caller, {}};
  ctx.treePipes = treePipes;

  std::set<int> wanted;
  for (auto f : fds) {
    int target = f.getFd();
    wanted.insert(target);
    const FdKind& kind = kindOf(f.getKind());
    const bool here = madeHere(f, kind, fds, treePipes != nullptr);
    // Back home: an fd that stayed at home is the deputy's, at its number. One that was
    // made anew away (an epoll, a pipe inside the job) is made again from the image:
    // the deputy's copy at that number is the one from before the move.
    if (keepInherited && !here && caller.inherited(target)) continue;
    if (heldFrom >= 0 && !here) {
      kj::AutoCloseFd null(open("/dev/null", O_RDWR));
      if (null == nullptr) fail(kj::str("cannot open /dev/null: ", strerror(errno)));
      placeAt(kj::mv(null), target);
      continue;
    }
    const bool home = migrated != nullptr && !here;
    if (home) markHome(f, kind, *migrated);
    if (f.getDupOf() >= 0) {
      if (dup2(f.getDupOf(), target) < 0) fail(kj::str("cannot duplicate fd ", f.getDupOf(), " as ", target));
      continue;
    }
    if (home) {
      placeAt(homeStandIn(f, kind, *migrated, warn), target);
      continue;
    }
    kind.restore(f, ctx);
  }
  // Every fd is in place: state that names other fds by number can go back.
  for (const FdKind* kind : fdKinds()) {
    if (kind->settle != nullptr) kind->settle(ctx);
  }
  ctx.parked.clear();
  // Close everything else we hold, except `keep` and the restart's messages.
  wanted.insert(warn);
  closeOthers(wanted, keep, keepCount, heldFrom);
  // Last: closing any fd of a file drops the process's fcntl locks on it. A migrated
  // job's locks stayed at home with its deputy.
  if (migrated == nullptr) {
    for (size_t i = 0; i < image.sectionCount(); ++i) {
      if (image.section(i).type != static_cast<uint16_t>(image::SectionType::files)) continue;
      file_locks::retake(image.meta<image::schema::Files>(i));
    }
  }
}

void placeAt(kj::AutoCloseFd fd, int target) {
  if (fd == target) {
    fcntl(fd.release(), F_SETFD, 0);  // made at that very number, maybe close-on-exec
    return;
  }
  if (dup2(fd, target) < 0) fail(kj::str("cannot place fd ", target, ": ", strerror(errno)));
}

kj::AutoCloseFd openSaved(FdRecord::Reader f, const char* path) {
  uint32_t flags = f.getFlags() & ~static_cast<uint32_t>(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC);
  kj::AutoCloseFd fd(open(path, static_cast<int>(flags)));
  if (fd == nullptr) fail(kj::str("cannot reopen ", f.getPath(), " for fd ", f.getFd(), ": ", strerror(errno)));
  return fd;
}

void seekSaved(int fd, FdRecord::Reader f) {
  if (lseek(fd, f.getOffset(), SEEK_SET) < 0 && errno != ESPIPE) {
    fail(kj::str("cannot restore the offset of fd ", f.getFd(), " (", f.getPath(), "): ", strerror(errno)));
  }
}

void reopenSaved(FdRecord::Reader f, const char* path) {
  kj::AutoCloseFd fd = openSaved(f, path);
  seekSaved(fd, f);
  placeAt(kj::mv(fd), f.getFd());
}

void invalidRecord(const CheckContext& ctx, kj::StringPtr why) {
  fail(kj::str(ctx.section, ": invalid metadata: ", why));
}

}  // namespace mig::resources
