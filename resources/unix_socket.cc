// Unix sockets the process owns alone (socket_state.h says how they are read):
// - listening (stream or seqpacket), on a path or an abstract name: bound to the
//   same name again and listening, with its backlog (unix_diag) and options; a path
//   left behind by the ended process is taken back if nobody answers on it.
//   Connections waiting in the accept queue are not saved: the checkpoint says so.
// - bound and not connected (a datagram socket, a stream socket before listen), or
//   never bound: made again the same way.
// - a socketpair (or two sockets connected to each other) with both ends in the
//   process: made again as a socketpair, with what waited to be read on each end
//   sent again, datagram by datagram. The bytes are read with MSG_PEEK under
//   SO_PEEK_OFF (unix(7)), so the process keeps them. File descriptors in flight
//   (SCM_RIGHTS) cannot be saved: the checkpoint fails and says so.
// In a tree, a socketpair with its ends in two members is the tree's: each end is
// captured as above by its member, and the restart makes the pair once, before the
// members are forked (makeTreeSocketpair). A Unix socket connected to another
// process is a home stream (home_stream.cc). On migration every socket stays at home
// but one: a job away from home with children born there (a tree image) takes the
// socketpairs of the family along (python's multiprocessing.Pipe), captured as above
// and made anew where it lands (movesWithTree), both ends with what waited on them.
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"
#include "resources/proc_file.h"
#include "resources/socket_state.h"

#include "image/image_error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace mig::resources {
namespace {

using image::fail;
using State = image::schema::FileDescriptor::SocketState;

constexpr uint8_t kEstablished = 1, kClose = 7, kListen = 10;  // TCP states, as unix_diag reports them

// Socketpairs share RestoreContext::parked with pipes (keyed by their inode): ours
// carry a bit no inode number has.
constexpr uint64_t kParkedPair = 1ull << 63;

// A socket another member of the tree holds (its socketpair is the tree's).
bool inTree(uint64_t inode, const CaptureContext& ctx) {
  return ctx.treePipes != nullptr && ctx.treePipes->count(kTreeSocket | inode) > 0;
}

bool inProcess(uint64_t inode, const CaptureContext& ctx) {
  for (const FdProbe& other : ctx.all) {
    if (sockets::socketInode(other.target) == inode) return true;
  }
  return false;
}

bool matches(const FdProbe& p, const CaptureContext& ctx) {
  const uint64_t inode = sockets::socketInode(p.target);
  if (inode == 0) return false;
  kj::AutoCloseFd copy = sockets::copyOf(ctx, p.fd);
  if (copy == nullptr || sockets::intOption(copy, SOL_SOCKET, SO_DOMAIN, 0) != AF_UNIX) return false;
  sockets::DiagInfo d;
  if (!sockets::unixDiag(inode, d)) return false;
  if (d.state == kListen) return true;
  if (d.state == kClose) return d.peerInode == 0;
  if (d.state != kEstablished || d.peerInode == 0 || !(inProcess(d.peerInode, ctx) || inTree(d.peerInode, ctx))) {
    return false;
  }
  sockets::DiagInfo peer;
  return sockets::unixDiag(d.peerInode, peer) && peer.peerInode == inode;
}

// A relative path was bound relative to the process's working directory of then;
// the nearest guess is its working directory now.
void absolutePath(const CaptureContext& ctx, FdRecord::Builder out) {
  auto local = out.getSocket().getLocal();
  const size_t off = offsetof(sockaddr_un, sun_path);
  if (local.size() <= off || local[off] == '\0' || local[off] == '/') return;
  std::string rel(reinterpret_cast<const char*>(local.begin()) + off,
                  strnlen(reinterpret_cast<const char*>(local.begin()) + off, local.size() - off));
  std::string path = readLink("/proc/" + std::to_string(ctx.pid) + "/cwd") + "/" + rel;
  sockaddr_un un{};
  if (path.size() >= sizeof(un.sun_path)) return;
  un.sun_family = AF_UNIX;
  memcpy(un.sun_path, path.data(), path.size());
  out.getSocket().setLocal(kj::arrayPtr(reinterpret_cast<const kj::byte*>(&un), off + path.size() + 1));
}

// What waits to be read on `copy`, one entry per read, left in place: SO_PEEK_OFF
// moves each MSG_PEEK past what the previous one returned (and is put back).
kj::Vector<kj::Array<kj::byte>> peekQueued(int copy, int fd) {
  const int before = sockets::intOption(copy, SOL_SOCKET, SO_PEEK_OFF, -1);
  int zero = 0;
  if (setsockopt(copy, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) != 0) {
    fail(kj::str("cannot read what waits in the socketpair of fd ", fd, ": SO_PEEK_OFF: ", strerror(errno)));
  }
  KJ_DEFER(setsockopt(copy, SOL_SOCKET, SO_PEEK_OFF, &before, sizeof(before)));
  kj::Vector<kj::Array<kj::byte>> out;
  auto buf = kj::heapArray<kj::byte>(1 << 20);  // more than a Unix datagram can be (SO_SNDBUF limits it)
  for (;;) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    iovec iov = {buf.begin(), buf.size()};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(copy, &m, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) fail(kj::str("cannot read what waits in the socketpair of fd ", fd, ": ", strerror(errno)));
    bool rights = (m.msg_flags & MSG_CTRUNC) != 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      rights = true;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int passed;
        memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        close(passed);  // the peek gave us copies; the process keeps its own
      }
    }
    if (rights) {
      fail(kj::str("fd ", fd,
                   " is a socketpair with file descriptors in flight (SCM_RIGHTS), which cannot be "
                   "saved; checkpoint once the program has received them"));
    }
    if (m.msg_flags & MSG_TRUNC) fail(kj::str("a datagram waiting on fd ", fd, " is larger than 1 MiB"));
    if (n == 0) break;  // a stream's end (its peer shut down writing) or an empty datagram
    out.add(kj::heapArray<kj::byte>(buf.slice(0, static_cast<size_t>(n))));
  }
  return out;
}

// A socketpair end of a family moving away from home: its other end is in the image
// (the process's own, or a member's of its tree).
bool pairOfFamily(const FdProbe& p, const CaptureContext& ctx) {
  sockets::DiagInfo d;
  return ctx.treePipes != nullptr && sockets::unixDiag(sockets::socketInode(p.target), d) && d.state == kEstablished &&
         d.peerInode != 0 && inTree(d.peerInode, ctx);
}

void capture(const FdProbe& p, const CaptureContext& ctx, FdRecord::Builder out) {
  if (ctx.options.forMigration && !pairOfFamily(p, ctx)) return;  // it stays at home, open in the deputy
  kj::AutoCloseFd copy = sockets::captureCommon(p, ctx, out);
  const uint64_t inode = sockets::socketInode(p.target);
  absolutePath(ctx, out);
  auto s = out.getSocket();
  sockets::DiagInfo d;
  if (!sockets::unixDiag(inode, d)) fail(kj::str("cannot read Unix socket fd ", p.fd, " (sock_diag): it went away?"));
  const bool named = s.getLocal().size() > offsetof(sockaddr_un, sun_path);
  if (d.state == kListen) {
    s.setState(State::LISTENING);
    s.setBacklog(d.backlog);
    if (d.pending > 0) {
      ctx.warn(kj::str("fd ", p.fd, ": ", d.pending, " connection(s) waiting to be accepted on ",
                       sockets::describe(s.getLocal()), " are not saved; after a restart their clients see a reset"));
    }
  } else if (d.state == kEstablished) {
    s.setState(State::CONNECTED);
    s.setPeerInode(d.peerInode);
    auto queued = peekQueued(copy, p.fd);
    auto list = s.initQueued(static_cast<unsigned>(queued.size()));
    for (size_t i = 0; i < queued.size(); ++i) list.set(static_cast<unsigned>(i), queued[i]);
  } else {
    s.setState(named ? State::BOUND : State::UNBOUND);
    struct pollfd pf = {copy, POLLIN, 0};
    if (s.getType() != SOCK_STREAM && poll(&pf, 1, 0) > 0) {
      ctx.warn(kj::str("fd ", p.fd, ": datagrams waiting on Unix socket ", sockets::describe(s.getLocal()),
                       " are not saved; a restart loses them"));
    }
  }
}

void check(FdRecord::Reader f, const CheckContext& ctx) {
  if (ctx.migrated) return;  // a migrated job's socket stays at home: nothing of it was saved
  auto s = f.getSocket();
  if (s.getFamily() != AF_UNIX) {
    invalidRecord(ctx, kj::str("fd ", f.getFd(), " is a Unix socket of family ", s.getFamily()));
  }
  if (s.getState() == State::CONNECTED && s.getPeerInode() == 0) {
    invalidRecord(ctx, kj::str("fd ", f.getFd(), " is a socketpair end without its other end"));
  }
}

// Sends what `reader` had waiting, through its other end `writer`.
void refill(int writer, FdRecord::Reader reader) {
  for (auto piece : reader.getSocket().getQueued()) {
    ssize_t n = send(writer, piece.begin(), piece.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n != static_cast<ssize_t>(piece.size())) {
      fail(kj::str("cannot put back the ", piece.size(), " bytes that waited on socketpair fd ", reader.getFd(), ": ",
                   n < 0 ? strerror(errno) : "short write"));
    }
  }
}

void restorePair(FdRecord::Reader f, RestoreContext& ctx) {
  auto s = f.getSocket();
  if (ctx.treePipes != nullptr) {
    auto shared = ctx.treePipes->find(kTreeSocket | s.getInode());
    if (shared != ctx.treePipes->end()) {
      // Its other end is in another member: the pair was made for the whole tree.
      kj::AutoCloseFd mine(fcntl(shared->second.first, F_DUPFD_CLOEXEC, ctx.maxFd + 1));
      if (mine == nullptr) fail(kj::str("cannot place socketpair fd ", f.getFd(), ": ", strerror(errno)));
      sockets::placeSaved(kj::mv(mine), f);
      return;
    }
  }
  const uint64_t key = kParkedPair | std::min(s.getInode(), s.getPeerInode());
  auto parked = ctx.parked.find(key);
  if (parked != ctx.parked.end()) {
    kj::AutoCloseFd mine = kj::mv(parked->second);
    ctx.parked.erase(parked);
    sockets::placeSaved(kj::mv(mine), f);
    return;
  }
  const FdRecord::Reader* peerRecord = nullptr;
  for (const FdRecord::Reader& o : ctx.all) {
    if (o.getKind() == FdRecord::Kind::UNIX_SOCKET && o.getDupOf() < 0 &&
        o.getSocket().getInode() == s.getPeerInode()) {
      peerRecord = &o;
    }
  }
  if (peerRecord == nullptr) fail(kj::str("socketpair fd ", f.getFd(), " has its other end missing from the image"));
  FdRecord::Reader peer = *peerRecord;
  int sv[2];
  if (socketpair(AF_UNIX, s.getType() | SOCK_CLOEXEC, 0, sv) != 0) {
    fail(kj::str("cannot make a socketpair for fd ", f.getFd(), ": ", strerror(errno)));
  }
  kj::AutoCloseFd mine(sv[0]), theirs(sv[1]);
  // Each end's options first (buffer sizes among them, so what waited fits again).
  sockets::setSavedOptions(mine, f, ctx);
  sockets::setSavedOptions(theirs, peer, ctx);
  refill(theirs, f);
  refill(mine, peer);
  kj::AutoCloseFd away(fcntl(theirs, F_DUPFD_CLOEXEC, ctx.maxFd + 1));  // above every saved number
  if (away == nullptr) fail(kj::str("cannot make a socketpair for fd ", f.getFd(), ": ", strerror(errno)));
  ctx.parked.emplace(key, kj::mv(away));
  sockets::placeSaved(kj::mv(mine), f);
}

// Captured whole on migration only as a family's socketpair (pairOfFamily).
bool movesWithTree(FdRecord::Reader f) {
  return f.getSocket().getState() == State::CONNECTED && f.getSocket().getPeerInode() != 0;
}

void restore(FdRecord::Reader f, RestoreContext& ctx) {
  auto s = f.getSocket();
  if (s.getState() == State::CONNECTED) return restorePair(f, ctx);
  sockets::placeSaved(sockets::restoreUnconnected(f, ctx), f);
}

}  // namespace

void makeTreeSocketpair(FdRecord::Reader a, FdRecord::Reader b, const CallerFds& caller, kj::AutoCloseFd& aEnd,
                        kj::AutoCloseFd& bEnd) {
  int sv[2];
  if (socketpair(AF_UNIX, static_cast<int>(a.getSocket().getType()) | SOCK_CLOEXEC, 0, sv) != 0) {
    fail(kj::str("cannot make a socketpair for fd ", a.getFd(), ": ", strerror(errno)));
  }
  aEnd = kj::AutoCloseFd(sv[0]);
  bEnd = kj::AutoCloseFd(sv[1]);
  RestoreContext ctx{nullptr, 0, 2, nullptr, caller, {}, nullptr};
  sockets::setSavedOptions(aEnd, a, ctx);
  sockets::setSavedOptions(bEnd, b, ctx);
  refill(bEnd, a);
  refill(aEnd, b);
}

extern const FdKind kUnixSocket = {
    .kind = FdRecord::Kind::UNIX_SOCKET,
    .name = "unix_socket",
    .onMigration = OnMigration::homeStream,
    .matches = matches,
    .capture = capture,
    .check = check,
    .restore = restore,
    .movesWithTree = movesWithTree,
};

}  // namespace mig::resources
