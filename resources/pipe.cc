// A pipe whose both ends the process holds (its own plumbing, e.g. a self-pipe):
// the bytes in its buffer are saved with the read end and the restart makes a new
// pipe with those bytes in it. It is the process's own, so on migration it is made
// anew on the new host too. A pipe with one end elsewhere (a shell pipeline) is a
// home stream (home_stream.cc). In a tree's checkpoint a pipe between members is the
// tree's: its bytes are saved once (process_capture.cc) and every member's ends
// are records naming it, restored from the one pipe the restart makes for the tree;
// so is a FIFO between members (the restart opens it again by its path).
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"

#include "image/image_error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <string>
#include <unistd.h>

namespace mig::resources {
namespace {

using image::fail;

uint32_t accessMode(uint32_t flags) { return flags & O_ACCMODE; }

bool isTreePipe(const FdProbe& p, const CaptureContext& ctx) {
  return ctx.treePipes != nullptr && ctx.treePipes->count(p.st.st_ino) > 0;
}

bool matches(const FdProbe& p, const CaptureContext& ctx) {
  // A FIFO between a tree's members is one of the tree's pipes (opened by its path).
  if (p.path[0] == '/' && S_ISFIFO(p.st.st_mode)) return isTreePipe(p, ctx);
  if (p.path.rfind("pipe:", 0) != 0) return false;
  if (isTreePipe(p, ctx)) return true;
  for (const FdProbe& other : ctx.all) {
    if (other.target == p.target && accessMode(other.flags) != accessMode(p.flags)) return true;
  }
  return false;
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
  for (const FdProbe& other : ctx.all) {
    if (other.target != p.target || accessMode(other.flags) != O_WRONLY) continue;
    kj::AutoCloseFd wfd(::open(ctx.linkOf(other.fd).c_str(), O_WRONLY | O_CLOEXEC));
    if (wfd == nullptr || ::write(wfd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
      fail(kj::str("could not put back ", data.size(), " bytes into the pipe of fd ", p.fd));
    }
    break;
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
