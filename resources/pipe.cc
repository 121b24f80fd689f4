// A pipe whose both ends the process holds (its own plumbing, e.g. a self-pipe), or
// whose other end no process holds any more (a shell's `$(...)` whose child has ended
// and been reaped while the shell still reads what it wrote): the bytes in its buffer
// are saved with the read end and the restart makes a new pipe with those bytes in it.
// It is the process's own, so on migration it is made anew on the new host too, unless
// another process holds it as well (then it stays at home: heldElsewhere). A pipe with
// its other end in another process (a shell pipeline) is a home stream
// (home_stream.cc). In a tree's checkpoint a pipe between members is the tree's: its
// bytes are saved once (process_capture.cc) and every member's ends are records naming it, restored from the one pipe the restart makes for the tree;
// so is a FIFO between members (the restart opens it again by its path).
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"

#include "image/image_error.h"

#include <cerrno>
#include <cstdlib>
#include <dirent.h>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <string>
#include <unistd.h>

namespace mig::resources {
namespace {

using image::fail;

uint32_t accessMode(uint32_t flags) { return flags & O_ACCMODE; }

bool isTreePipe(const FdProbe& p, const CaptureContext& ctx) {
  return ctx.treePipes != nullptr && ctx.treePipes->count(p.st.st_ino) > 0;
}

// Whether a process other than `self` holds the pipe `target` ("pipe:[N]"): then it is
// not the process's own plumbing. On a move that matters: a pipe the process holds
// both ends of and another process (a member of its tree that moves too, or a child
// left at home) holds as well stays one pipe, at home (a home stream), or the bytes
// one writes would never reach the other (python's multiprocessing.Pool: the parent
// holds both ends of its task and result pipes, its workers one each).
bool heldElsewhere(const std::string& target, pid_t self) {
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return false;
  bool found = false;
  while (!found) {
    struct dirent* e = readdir(proc);
    if (e == nullptr) break;
    char* end = nullptr;
    long pid = strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || pid == self) continue;
    std::string dir = std::string("/proc/") + e->d_name + "/fd";
    DIR* fds = opendir(dir.c_str());
    if (fds == nullptr) continue;
    while (struct dirent* f = readdir(fds)) {
      if (f->d_name[0] == '.') continue;
      char link[64];
      ssize_t n = readlinkat(dirfd(fds), f->d_name, link, sizeof(link) - 1);
      if (n > 0 && static_cast<size_t>(n) == target.size() && target.compare(0, target.size(), link, static_cast<size_t>(n)) == 0) {
        found = true;
        break;
      }
    }
    closedir(fds);
  }
  closedir(proc);
  return found;
}

// Whether the other end of the pipe of `p` is closed everywhere: a read end no writer
// holds (the kernel says POLLHUP), a write end no reader does (POLLERR). Asked of the
// process's own open file (a pidfd_getfd copy): an end opened again through /proc
// would not see the hang-up of writers gone before it was opened.
bool otherEndGone(const FdProbe& p, const CaptureContext& ctx) {
  if (ctx.pidfd < 0 || accessMode(p.flags) == O_RDWR) return false;
  kj::AutoCloseFd copy(static_cast<int>(syscall(SYS_pidfd_getfd, ctx.pidfd, p.fd, 0)));
  if (copy == nullptr) return false;
  struct pollfd q = {copy.get(), 0, 0};
  if (poll(&q, 1, 0) != 1) return false;
  return (q.revents & (accessMode(p.flags) == O_RDONLY ? POLLHUP : POLLERR)) != 0;
}

bool matches(const FdProbe& p, const CaptureContext& ctx) {
  // A FIFO between a tree's members is one of the tree's pipes (opened by its path).
  if (p.path[0] == '/' && S_ISFIFO(p.st.st_mode)) return isTreePipe(p, ctx);
  if (p.path.rfind("pipe:", 0) != 0) return false;
  if (isTreePipe(p, ctx)) return true;
  bool bothEnds = false;
  for (const FdProbe& other : ctx.all) {
    bothEnds = bothEnds || (other.target == p.target && accessMode(other.flags) != accessMode(p.flags));
  }
  // One end only: a stream to another process, unless no process holds the other end
  // any more. Then it is the process's own: a pipe made away is nothing at home (its
  // deputy has no fd there, so coming home it was /dev/null, bytes lost).
  if (!bothEnds && !otherEndGone(p, ctx)) return false;
  return !(ctx.options.forMigration && heldElsewhere(p.target, ctx.pid));
}

void capture(const FdProbe& p, const CaptureContext& ctx, FdRecord::Builder out) {
  out.getPipe().setId(p.st.st_ino);
  if (accessMode(p.flags) != O_RDONLY || isTreePipe(p, ctx)) return;  // a tree's pipe: its bytes are the tree's
  // Take the buffered bytes out and put them straight back: the process (parked, so
  // nobody else reads) keeps them, and the image has a copy.
  std::string data;
  kj::AutoCloseFd rfd(::open(ctx.linkOf(p.fd).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (rfd != nullptr) {
    char buf[65536];
    ssize_t n;
    while ((n = ::read(rfd, buf, sizeof(buf))) > 0) data.append(buf, static_cast<size_t>(n));
  }
  if (data.empty()) return;
  // Through a write end of our own (the process may hold none: its writer has ended).
  kj::AutoCloseFd wfd(::open(ctx.linkOf(p.fd).c_str(), O_WRONLY | O_CLOEXEC));
  if (wfd == nullptr || ::write(wfd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    fail(kj::str("could not put back ", data.size(), " bytes into the pipe of fd ", p.fd));
  }
  out.setContents(kj::arrayPtr(reinterpret_cast<const kj::byte*>(data.data()), data.size()));
}

// The first end restored makes the pipe, fills it and parks the other end.
void restore(FdRecord::Reader f, RestoreContext& ctx) {
  const uint64_t id = f.getPipe().getId();
  const bool readEnd = accessMode(f.getFlags()) == O_RDONLY;
  if (ctx.treePipes != nullptr) {
    auto shared = ctx.treePipes->find(id);
    if (shared != ctx.treePipes->end()) {
      // One pipe for the whole tree, made before its members were forked.
      if (dup2(readEnd ? shared->second.first : shared->second.second, f.getFd()) < 0) {
        fail(kj::str("cannot place pipe fd ", f.getFd(), ": ", strerror(errno)));
      }
      fcntl(f.getFd(), F_SETFL, f.getFlags() & O_NONBLOCK);
      return;
    }
  }
  kj::AutoCloseFd mine;
  auto parked = ctx.parked.find(id);
  if (parked != ctx.parked.end()) {
    mine = kj::mv(parked->second);
    ctx.parked.erase(parked);
  } else {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) fail(kj::str("cannot create a pipe: ", strerror(errno)));
    kj::AutoCloseFd r(p[0]), w(p[1]);
    for (auto other : ctx.all) {
      if (other.getKind() != FdRecord::Kind::PIPE || other.getPipe().getId() != id || other.getDupOf() >= 0 ||
          accessMode(other.getFlags()) != O_RDONLY) {
        continue;
      }
      auto data = other.getContents();
      if (data.size() > 0 && write(w, data.begin(), data.size()) != static_cast<ssize_t>(data.size())) {
        fail(kj::str("cannot refill the pipe of fd ", other.getFd()));
      }
    }
    kj::AutoCloseFd& other = readEnd ? w : r;
    kj::AutoCloseFd away(fcntl(other, F_DUPFD_CLOEXEC, ctx.maxFd + 1));  // above every saved number
    if (away == nullptr) fail(kj::str("cannot create a pipe: ", strerror(errno)));
    ctx.parked.emplace(id, kj::mv(away));
    mine = kj::mv(readEnd ? r : w);
  }
  const int target = f.getFd();
  if (mine.get() == target) {
    fcntl(mine.release(), F_SETFD, 0);  // pipe2 gave the very number, close-on-exec
  } else if (dup2(mine, target) < 0) {
    fail(kj::str("cannot place pipe fd ", target, ": ", strerror(errno)));
  }
  fcntl(target, F_SETFL, f.getFlags() & O_NONBLOCK);
}

}  // namespace

extern const FdKind kPipe = {
    .kind = FdRecord::Kind::PIPE,
    .name = "pipe",
    .onMigration = OnMigration::recreated,
    .matches = matches,
    .capture = capture,
    .restore = restore,
};

}  // namespace mig::resources
