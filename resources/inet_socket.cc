// TCP and UDP sockets, IPv4 and IPv6 (socket_state.h says how they are read).
// - A listening TCP socket comes back bound to the same address and listening, with
//   its backlog (sock_diag) and options. Connections waiting in its accept queue
//   are not saved: the checkpoint says so.
// - A bound UDP socket comes back bound, and connected to the same peer if it was.
//   Datagrams waiting in it are not saved: the checkpoint says so.
// - A TCP connection is not restored (that needs TCP repair, CAP_NET_ADMIN, and the
//   network held off between checkpoint and restart): the checkpoint prints one line
//   naming the fd and the peer (and with --stop resets it for the peer:
//   sockets::resetOnExit), and at restart the fd is a TCP socket that a reset ended,
//   so the program reads ECONNRESET and then end of file, as if its peer had gone
//   away, instead of a silent /dev/null.
// - A socket made and never bound comes back the same, with its options.
// On migration every socket stays at home (home stream): only a restart uses this.
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"
#include "resources/socket_state.h"

#include "image/image_error.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace mig::resources {
namespace {

using image::fail;
using State = image::schema::FileDescriptor::SocketState;

bool matches(const FdProbe& p, const CaptureContext& ctx) {
  if (sockets::socketInode(p.target) == 0) return false;
  kj::AutoCloseFd copy = sockets::copyOf(ctx, p.fd);
  if (copy == nullptr) return false;
  const int family = sockets::intOption(copy, SOL_SOCKET, SO_DOMAIN, 0);
  const int protocol = sockets::intOption(copy, SOL_SOCKET, SO_PROTOCOL, 0);
  const int type = sockets::intOption(copy, SOL_SOCKET, SO_TYPE, 0);
  return (family == AF_INET || family == AF_INET6) &&
         ((type == SOCK_STREAM && protocol == IPPROTO_TCP) || (type == SOCK_DGRAM && protocol == IPPROTO_UDP));
}

// TCP_INFO's state: TCP_ESTABLISHED, TCP_SYN_SENT, ..., TCP_CLOSE (netinet/tcp.h).
int tcpState(int fd) {
  struct tcp_info info {};
  socklen_t len = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return TCP_CLOSE;
  return info.tcpi_state;
}

bool hasPort(kj::ArrayPtr<const kj::byte> sockaddr) {
  // sin_port and sin6_port sit at the same place.
  if (sockaddr.size() < sizeof(sockaddr_in)) return false;
  sockaddr_in in;
  memcpy(&in, sockaddr.begin(), sizeof(in));
  return in.sin_port != 0;
}

void capture(const FdProbe& p, const CaptureContext& ctx, FdRecord::Builder out) {
  if (ctx.options.forMigration) return;  // it stays at home, open in the deputy
  kj::AutoCloseFd copy = sockets::captureCommon(p, ctx, out);
  const uint64_t inode = sockets::socketInode(p.target);
  auto s = out.getSocket();
  const kj::String local = sockets::describe(s.getLocal());
  const bool tcp = s.getType() == SOCK_STREAM;
  if (tcp && sockets::intOption(copy, SOL_SOCKET, SO_ACCEPTCONN, 0) != 0) {
    s.setState(State::LISTENING);
    sockets::DiagInfo d;
    if (sockets::tcpListenDiag(s.getFamily(), inode, d)) s.setBacklog(d.backlog);
    struct pollfd pf = {copy, POLLIN, 0};
    if (d.pending > 0 || poll(&pf, 1, 0) > 0) {
      ctx.warn(kj::str("fd ", p.fd, ": connections waiting to be accepted on ", local,
                       " are not saved; after a restart their clients see a reset"));
    }
  } else if (tcp && tcpState(copy) != TCP_CLOSE) {
    // Established, being made (SYN_SENT: no peer address yet) or closing: a connection.
    s.setState(State::CONNECTED);
    const kj::String peer = s.getPeer().size() > 0 ? sockets::describe(s.getPeer()) : kj::str("(connecting)");
    if (ctx.connections != nullptr) ctx.connections->add(p.fd);
    ctx.warn(kj::str("fd ", p.fd, ": TCP connection ", local, " -> ", peer,
                     " is not saved; a restart finds it reset by the peer (and --stop resets it for the peer)"));
  } else if (!tcp && s.getPeer().size() > 0) {
    s.setState(State::BOUND);  // and connected: `peer` says to what
  } else {
    s.setState(hasPort(s.getLocal()) ? State::BOUND : State::UNBOUND);
  }
  int queued = 0;
  if (!tcp && ioctl(copy, FIONREAD, &queued) == 0 && queued > 0) {
    ctx.warn(kj::str("fd ", p.fd, ": datagrams waiting on UDP ", local, " are not saved; a restart loses them"));
  }
}

void check(FdRecord::Reader f, const CheckContext& ctx) {
  if (ctx.migrated) return;  // a migrated job's socket stays at home: nothing of it was saved
  auto s = f.getSocket();
  if (s.getFamily() != AF_INET && s.getFamily() != AF_INET6) {
    invalidRecord(ctx, kj::str("fd ", f.getFd(), " is an internet socket of family ", s.getFamily()));
  }
  if ((s.getState() == State::BOUND || s.getState() == State::LISTENING) && !hasPort(s.getLocal())) {
    invalidRecord(ctx, kj::str("fd ", f.getFd(), " is a bound socket without an address"));
  }
}

// A TCP socket whose connection a reset ended: made by connecting over loopback to a
// listener of our own that closes at once with SO_LINGER 0 (socket(7)), so it answers
// ECONNRESET once, then end of file, and poll reports POLLERR|POLLHUP.
kj::AutoCloseFd resetConnection(int family) {
  const bool v6 = family == AF_INET6;
  sockaddr_storage a{};
  socklen_t len;
  if (v6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a);
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_loopback;
    len = sizeof(*in6);
  } else {
    auto* in = reinterpret_cast<sockaddr_in*>(&a);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*in);
  }
  kj::AutoCloseFd client(socket(family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (client == nullptr) return nullptr;
  kj::AutoCloseFd listener(socket(family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (listener == nullptr || bind(listener, reinterpret_cast<sockaddr*>(&a), len) != 0 || listen(listener, 1) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
      connect(client, reinterpret_cast<sockaddr*>(&a), len) != 0) {
    return client;  // never connected: reads ENOTCONN, poll says POLLHUP
  }
  kj::AutoCloseFd accepted(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (accepted != nullptr) {
    struct linger l = {1, 0};
    setsockopt(accepted, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  }
  return client;
}

void restore(FdRecord::Reader f, RestoreContext& ctx) {
  auto s = f.getSocket();
  if (s.getState() == State::CONNECTED) {
    kj::AutoCloseFd fd = resetConnection(s.getFamily());
    if (fd == nullptr) fail(kj::str("cannot make a socket for fd ", f.getFd(), ": ", strerror(errno)));
    sockets::placeSaved(kj::mv(fd), f);
    return;
  }
  // A TCP socket bound, neither listening nor connected: maybe the remains of a
  // connection that ended (its port given back), nothing a program waits on. Unbound
  // if it must be.
  kj::AutoCloseFd fd =
      sockets::restoreUnconnected(f, ctx, s.getState() == State::BOUND && s.getType() == SOCK_STREAM);
  auto peer = s.getPeer();
  if (s.getState() == State::BOUND && peer.size() > 0) {
    sockaddr_storage a{};
    memcpy(&a, peer.begin(), std::min(peer.size(), sizeof(a)));
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), static_cast<socklen_t>(peer.size())) != 0) {
      fail(kj::str("cannot connect UDP fd ", f.getFd(), " to ", sockets::describe(peer), " again: ", strerror(errno)));
    }
  }
  sockets::placeSaved(kj::mv(fd), f);
}

}  // namespace

extern const FdKind kInetSocket = {
    .kind = FdRecord::Kind::INET_SOCKET,
    .name = "inet_socket",
    .onMigration = OnMigration::homeStream,
    .matches = matches,
    .capture = capture,
    .check = check,
    .restore = restore,
};

}  // namespace mig::resources
