// See socket_state.h.
#include "resources/socket_state.h"

#include "image/image_error.h"
#include "resources/fd_restore.h"

#include <kj/exception.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

namespace mig::resources::sockets {

using image::fail;

namespace {

enum : uint8_t { kV4 = 1, kV6 = 2, kUnix = 4, kInet = kV4 | kV6, kAll = kInet | kUnix };

// The options saved: the ones programs set on servers and their sockets (see
// socket(7), tcp(7), ip(7), ipv6(7), unix(7)). Set again in this order, before bind:
// IPV6_V6ONLY, SO_REUSEADDR/PORT and IP_FREEBIND only act there.
struct OptionSpec {
  int level;
  int name;
  const char* text;
  socklen_t size;
  uint8_t families;
  bool tcpOnly;
};

constexpr OptionSpec kOptions[] = {
    {SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", sizeof(int), kInet, false},
    {SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", sizeof(int), kInet, false},
    {SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", sizeof(int), kInet, true},
    {SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST", sizeof(int), kInet, false},
    {SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", sizeof(int), kAll, false},
    {SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", sizeof(int), kAll, false},
    {SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT", sizeof(int), kAll, false},
    {SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE", sizeof(int), kInet, true},
    {SOL_SOCKET, SO_LINGER, "SO_LINGER", sizeof(struct linger), kAll, false},
    {SOL_SOCKET, SO_RCVTIMEO, "SO_RCVTIMEO", sizeof(struct timeval), kAll, false},
    {SOL_SOCKET, SO_SNDTIMEO, "SO_SNDTIMEO", sizeof(struct timeval), kAll, false},
    {SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY", sizeof(int), kAll, false},
    {SOL_SOCKET, SO_PASSCRED, "SO_PASSCRED", sizeof(int), kUnix, false},
    {SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF", sizeof(int), kUnix, false},
    {SOL_SOCKET, SO_TIMESTAMP, "SO_TIMESTAMP", sizeof(int), kAll, false},
    {IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", sizeof(int), kV6, false},
    {IPPROTO_IPV6, IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS", sizeof(int), kV6, false},
    {IPPROTO_IPV6, IPV6_TCLASS, "IPV6_TCLASS", sizeof(int), kV6, false},
    {IPPROTO_IPV6, IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO", sizeof(int), kV6, false},
    {IPPROTO_IPV6, IPV6_RECVERR, "IPV6_RECVERR", sizeof(int), kV6, false},
    {IPPROTO_IPV6, IPV6_MULTICAST_HOPS, "IPV6_MULTICAST_HOPS", sizeof(int), kV6, false},
    {IPPROTO_IPV6, IPV6_MULTICAST_LOOP, "IPV6_MULTICAST_LOOP", sizeof(int), kV6, false},
    {IPPROTO_IP, IP_FREEBIND, "IP_FREEBIND", sizeof(int), kV4, false},
    {IPPROTO_IP, IP_TOS, "IP_TOS", sizeof(int), kV4, false},
    {IPPROTO_IP, IP_TTL, "IP_TTL", sizeof(int), kV4, false},
    {IPPROTO_IP, IP_PKTINFO, "IP_PKTINFO", sizeof(int), kV4, false},
    {IPPROTO_IP, IP_RECVERR, "IP_RECVERR", sizeof(int), kV4, false},
    {IPPROTO_IP, IP_RECVTOS, "IP_RECVTOS", sizeof(int), kV4, false},
    {IPPROTO_IP, IP_MULTICAST_TTL, "IP_MULTICAST_TTL", sizeof(int), kV4, false},
    {IPPROTO_IP, IP_MULTICAST_LOOP, "IP_MULTICAST_LOOP", sizeof(int), kV4, false},
    {IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", sizeof(int), kInet, true},
    {IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", sizeof(int), kInet, true},
    {IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL", sizeof(int), kInet, true},
    {IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", sizeof(int), kInet, true},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", sizeof(int), kInet, true},
    {IPPROTO_TCP, TCP_FASTOPEN, "TCP_FASTOPEN", sizeof(int), kInet, true},
    {IPPROTO_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", sizeof(int), kInet, true},
    {IPPROTO_TCP, TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT", sizeof(int), kInet, true},
};

uint8_t familyBit(int family) {
  switch (family) {
    case AF_INET:
      return kV4;
    case AF_INET6:
      return kV6;
    case AF_UNIX:
      return kUnix;
    default:
      return 0;
  }
}

const OptionSpec* specOf(int level, int name) {
  for (const OptionSpec& s : kOptions) {
    if (s.level == level && s.name == name) return &s;
  }
  return nullptr;
}

kj::ArrayPtr<const kj::byte> bytes(const void* p, size_t n) { return kj::arrayPtr(static_cast<const kj::byte*>(p), n); }

// One request to sock_diag, its answers handed to `each` until the kernel says done.
// A timeout on the receive: the kernel answers at once, but nothing here may hang.
template <typename Req, typename Each>
bool diagQuery(const Req& req, bool dump, Each&& each) {
  kj::AutoCloseFd nl(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (nl == nullptr) return false;
  struct timeval tv = {5, 0};
  setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct {
    nlmsghdr h;
    Req r;
  } msg{};
  msg.h.nlmsg_len = sizeof(msg);
  msg.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.h.nlmsg_flags = NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0);
  msg.r = req;
  if (send(nl, &msg, sizeof(msg), 0) != static_cast<ssize_t>(sizeof(msg))) return false;
  alignas(nlmsghdr) char buf[32768];
  for (;;) {
    const ssize_t n = recv(nl, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) return true;
      if (h->nlmsg_type == NLMSG_ERROR) return false;
      if (each(h) && !dump) return true;
    }
    if (!dump) return true;
  }
}

// Drops the TIME_WAIT connections on the port of `a` (and its address, unless it is the
// wildcard): the number dropped, -1 where the kernel refuses (no CAP_NET_ADMIN).
int dropTimeWait(const sockaddr_storage& a) {
  inet_diag_req_v2 req{};
  req.sdiag_family = static_cast<uint8_t>(a.ss_family);
  req.sdiag_protocol = IPPROTO_TCP;
  req.idiag_states = 1u << 6;  // TCP_TIME_WAIT
  const bool v6 = a.ss_family == AF_INET6;
  const auto* in = reinterpret_cast<const sockaddr_in*>(&a);
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a);
  const uint16_t port = v6 ? in6->sin6_port : in->sin_port;
  uint32_t addr[4] = {};
  if (v6)
    memcpy(addr, &in6->sin6_addr, 16);
  else
    addr[0] = in->sin_addr.s_addr;
  const bool any = addr[0] == 0 && addr[1] == 0 && addr[2] == 0 && addr[3] == 0;
  kj::Vector<inet_diag_sockid> found;
  if (!diagQuery(req, true, [&](nlmsghdr* h) {
        auto* m = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
        if (m->id.idiag_sport == port && (any || memcmp(m->id.idiag_src, addr, v6 ? 16 : 4) == 0)) found.add(m->id);
        return false;
      })) {
    return -1;
  }
  int dropped = 0;
  for (const inet_diag_sockid& id : found) {
    kj::AutoCloseFd nl(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (nl == nullptr) return -1;
    struct {
      nlmsghdr h;
      inet_diag_req_v2 r;
    } msg{};
    msg.h.nlmsg_len = sizeof(msg);
    msg.h.nlmsg_type = SOCK_DESTROY;
    msg.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    msg.r = req;
    msg.r.id = id;
    struct timeval tv = {5, 0};
    setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (send(nl, &msg, sizeof(msg), 0) != static_cast<ssize_t>(sizeof(msg))) return -1;
    alignas(nlmsghdr) char buf[1024];
    ssize_t n = recv(nl, buf, sizeof(buf), 0);
    if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(nlmsgerr)))) return -1;
    auto* h = reinterpret_cast<nlmsghdr*>(buf);
    if (h->nlmsg_type != NLMSG_ERROR) return -1;
    const int err = static_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
    if (err == -EPERM || err == -EOPNOTSUPP) return -1;
    if (err == 0) ++dropped;  // else it went away by itself meanwhile
  }
  return dropped;
}

}  // namespace

uint64_t socketInode(const std::string& target) {
  if (target.rfind("socket:[", 0) != 0) return 0;
  return strtoull(target.c_str() + 8, nullptr, 10);
}

kj::AutoCloseFd copyOf(const CaptureContext& ctx, int fd) {
  if (ctx.pidfd < 0) return nullptr;
  return kj::AutoCloseFd(static_cast<int>(syscall(SYS_pidfd_getfd, ctx.pidfd, fd, 0)));
}

int intOption(int fd, int level, int name, int fallback) {
  int v = 0;
  socklen_t len = sizeof(v);
  return getsockopt(fd, level, name, &v, &len) == 0 ? v : fallback;
}

kj::AutoCloseFd captureCommon(const FdProbe& p, const CaptureContext& ctx, FdRecord::Builder out) {
  kj::AutoCloseFd copy = copyOf(ctx, p.fd);
  if (copy == nullptr) fail(kj::str("cannot read socket fd ", p.fd, ": ", strerror(errno)));
  const uint64_t inode = socketInode(p.target);
  auto s = out.getSocket();
  const int family = intOption(copy, SOL_SOCKET, SO_DOMAIN, 0);
  const int type = intOption(copy, SOL_SOCKET, SO_TYPE, 0);
  const int protocol = intOption(copy, SOL_SOCKET, SO_PROTOCOL, 0);
  s.setFamily(static_cast<uint16_t>(family));
  s.setType(static_cast<uint16_t>(type));
  s.setProtocol(static_cast<uint16_t>(protocol));
  s.setInode(inode);
  struct sockaddr_storage a;
  socklen_t len = sizeof(a);
  if (getsockname(copy, reinterpret_cast<sockaddr*>(&a), &len) == 0) s.setLocal(bytes(&a, len));
  len = sizeof(a);
  if (getpeername(copy, reinterpret_cast<sockaddr*>(&a), &len) == 0) s.setPeer(bytes(&a, len));

  kj::AutoCloseFd fresh(socket(family, type | SOCK_CLOEXEC, protocol));
  kj::Vector<const OptionSpec*> differ;
  kj::Vector<kj::Array<kj::byte>> values;
  for (const OptionSpec& o : kOptions) {
    if (!(o.families & familyBit(family)) || (o.tcpOnly && protocol != IPPROTO_TCP)) continue;
    auto v = kj::heapArray<kj::byte>(o.size);
    auto d = kj::heapArray<kj::byte>(o.size);
    memset(v.begin(), 0, o.size);
    memset(d.begin(), 0, o.size);
    socklen_t vl = o.size, dl = o.size;
    if (getsockopt(copy, o.level, o.name, v.begin(), &vl) != 0) continue;
    if (fresh != nullptr && getsockopt(fresh, o.level, o.name, d.begin(), &dl) == 0 && dl == vl &&
        memcmp(v.begin(), d.begin(), vl) == 0) {
      continue;
    }
    differ.add(&o);
    values.add(kj::heapArray<kj::byte>(v.slice(0, vl)));
  }
  auto list = s.initOptions(static_cast<unsigned>(differ.size()));
  for (size_t i = 0; i < differ.size(); ++i) {
    list[i].setLevel(differ[i]->level);
    list[i].setName(differ[i]->name);
    list[i].setValue(values[i]);
  }
  return copy;
}

kj::String describe(kj::ArrayPtr<const kj::byte> sockaddr) {
  if (sockaddr.size() < sizeof(sa_family_t)) return kj::str("(unnamed)");
  struct sockaddr_storage a {};
  memcpy(&a, sockaddr.begin(), std::min(sockaddr.size(), sizeof(a)));
  char host[INET6_ADDRSTRLEN] = "";
  switch (a.ss_family) {
    case AF_INET: {
      auto* in = reinterpret_cast<sockaddr_in*>(&a);
      inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
      return kj::str(host, ":", ntohs(in->sin_port));
    }
    case AF_INET6: {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&a);
      inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
      return kj::str("[", host, "]:", ntohs(in6->sin6_port));
    }
    case AF_UNIX: {
      auto* un = reinterpret_cast<sockaddr_un*>(&a);
      size_t n = sockaddr.size() - offsetof(sockaddr_un, sun_path);
      if (n == 0) return kj::str("(unnamed)");
      if (un->sun_path[0] != '\0') return kj::str(kj::StringPtr(un->sun_path, strnlen(un->sun_path, n)));
      std::string name = "@";
      for (size_t i = 1; i < n; ++i) {
        char c = un->sun_path[i];
        name += (c >= 0x20 && c < 0x7f) ? c : '?';
      }
      return kj::str(name.c_str());
    }
    default:
      return kj::str("(family ", a.ss_family, ")");
  }
}

void setSavedOptions(int fd, FdRecord::Reader f, RestoreContext& ctx) {
  for (auto o : f.getSocket().getOptions()) {
    auto v = o.getValue();
    const OptionSpec* spec = specOf(o.getLevel(), o.getName());
    int half;
    const void* value = v.begin();
    if (o.getLevel() == SOL_SOCKET && (o.getName() == SO_RCVBUF || o.getName() == SO_SNDBUF) &&
        v.size() == sizeof(int)) {
      memcpy(&half, v.begin(), sizeof(int));
      half /= 2;  // getsockopt shows twice what setsockopt was given (socket(7))
      value = &half;
    }
    if (setsockopt(fd, o.getLevel(), o.getName(), value, static_cast<socklen_t>(v.size())) != 0) {
      dprintf(ctx.warnFd,
              "migctl restart: fd %d: cannot set socket option %s again (%s); the socket goes on "
              "without it\n",
              f.getFd(), spec != nullptr ? spec->text : "(unknown)", strerror(errno));
    }
  }
}

kj::AutoCloseFd newSocket(FdRecord::Reader f, RestoreContext& ctx) {
  auto s = f.getSocket();
  kj::AutoCloseFd fd(socket(s.getFamily(), s.getType() | SOCK_CLOEXEC, s.getProtocol()));
  if (fd == nullptr) {
    fail(kj::str("cannot make a socket again for fd ", f.getFd(), " (family ", s.getFamily(), ", type ", s.getType(),
                 "): ", strerror(errno)));
  }
  setSavedOptions(fd, f, ctx);
  return fd;
}

void bindSaved(int fd, FdRecord::Reader f) {
  auto s = f.getSocket();
  auto local = s.getLocal();
  const kj::String where = describe(local);
  if (local.size() < sizeof(sa_family_t) || local.size() > sizeof(sockaddr_storage)) {
    fail(kj::str("fd ", f.getFd(), " has no address to bind to again"));
  }
  struct sockaddr_storage a {};
  memcpy(&a, local.begin(), local.size());
  if (a.ss_family == AF_UNIX) {
    // A path a socket was bound to stays in the file system after its process ended:
    // take it back if nobody answers on it, never if something does.
    auto* un = reinterpret_cast<sockaddr_un*>(&a);
    struct stat st;
    if (un->sun_path[0] != '\0' && lstat(un->sun_path, &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        fail(kj::str("cannot bind fd ", f.getFd(), " to ", where, " again: a file that is not a socket is there now"));
      }
      kj::AutoCloseFd probe(socket(AF_UNIX, s.getType() | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      if (probe != nullptr &&
          connect(probe, reinterpret_cast<sockaddr*>(&a), static_cast<socklen_t>(local.size())) == 0) {
        fail(kj::str("cannot bind fd ", f.getFd(), " to ", where,
                     " again: another process listens there; stop it first"));
      }
      if (errno == ECONNREFUSED) unlink(un->sun_path);
    }
  }
  // Our own port may still have connections of the ended process in TIME_WAIT:
  // SO_REUSEADDR for the bind only (it still refuses a port another socket listens on).
  const bool tcp = a.ss_family != AF_UNIX && s.getType() == SOCK_STREAM;
  const int reuse = intOption(fd, SOL_SOCKET, SO_REUSEADDR, 0);
  const int on = 1;
  if (tcp && !reuse) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&a), static_cast<socklen_t>(local.size()));
  if (rc != 0 && errno == EADDRINUSE && tcp && !reuse) {
    // Connections of a listener without SO_REUSEADDR keep its port in TIME_WAIT for a
    // minute against any bind (they lack SO_REUSEADDR too). They are the ended
    // process's: drop them (sock_diag's SOCK_DESTROY, CAP_NET_ADMIN) and bind again.
    const int dropped = dropTimeWait(a);
    if (dropped < 0) {
      fail(kj::str("cannot bind fd ", f.getFd(), " to ", where,
                   " again: its connections from before the checkpoint "
                   "hold the port for a minute (TIME_WAIT; the program does not set SO_REUSEADDR) and dropping them "
                   "needs CAP_NET_ADMIN: restart as root, or a minute later"));
    }
    rc = bind(fd, reinterpret_cast<sockaddr*>(&a), static_cast<socklen_t>(local.size()));
  }
  if (rc != 0) {
    fail(kj::str("cannot bind fd ", f.getFd(), " to ", where, " again: ", strerror(errno),
                 errno == EADDRINUSE ? " (another process has it now; stop it and restart again)" : ""));
  }
  if (tcp) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse));
}

void listenSaved(int fd, FdRecord::Reader f) {
  const uint32_t backlog = f.getSocket().getBacklog();
  if (listen(fd, backlog > 0 ? static_cast<int>(std::min<uint32_t>(backlog, 1u << 30)) : SOMAXCONN) != 0) {
    fail(kj::str("cannot listen on ", describe(f.getSocket().getLocal()), " again for fd ", f.getFd(), ": ",
                 strerror(errno),
                 errno == EADDRINUSE ? " (another process listens there now; stop it and restart again)" : ""));
  }
}

void placeSaved(kj::AutoCloseFd fd, FdRecord::Reader f) {
  fcntl(fd, F_SETFL, f.getFlags() & O_NONBLOCK);
  placeAt(kj::mv(fd), f.getFd());
}

kj::AutoCloseFd restoreUnconnected(FdRecord::Reader f, RestoreContext& ctx, bool mayStayUnbound) {
  using State = image::schema::FileDescriptor::SocketState;
  const State state = f.getSocket().getState();
  kj::AutoCloseFd fd = newSocket(f, ctx);
  if (state != State::UNBOUND && mayStayUnbound) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { bindSaved(fd, f); })) {
      dprintf(ctx.warnFd, "migctl restart: %s; the socket stays unbound\n", e->getDescription().cStr());
    }
  } else if (state != State::UNBOUND) {
    bindSaved(fd, f);
  }
  if (state == State::LISTENING) listenSaved(fd, f);
  return fd;
}

int resetOnExit(pid_t pid, kj::ArrayPtr<const int> fds) {
  kj::AutoCloseFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd == nullptr) return 0;
  int done = 0;
  for (int fd : fds) {
    // Our copy closes here, before the process ends: its close is then the last one.
    kj::AutoCloseFd copy(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
    struct linger l = {1, 0};
    if (copy != nullptr && setsockopt(copy, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) == 0) ++done;
  }
  return done;
}

bool unixDiag(uint64_t inode, DiagInfo& out) {
  unix_diag_req req{};
  req.sdiag_family = AF_UNIX;
  req.udiag_states = ~0u;
  req.udiag_ino = static_cast<uint32_t>(inode);
  req.udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN;
  req.udiag_cookie[0] = INET_DIAG_NOCOOKIE;
  req.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
  bool found = false;
  bool ok = diagQuery(req, false, [&](nlmsghdr* h) {
    auto* m = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
    if (m->udiag_ino != inode) return false;
    found = true;
    out.state = m->udiag_state;
    int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
    for (auto* a = reinterpret_cast<nlattr*>(m + 1);
         len >= static_cast<int>(sizeof(nlattr)) && a->nla_len >= sizeof(nlattr) && a->nla_len <= len;
         len -= NLA_ALIGN(a->nla_len),
               a = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(a) + NLA_ALIGN(a->nla_len))) {
      void* data = reinterpret_cast<char*>(a) + NLA_HDRLEN;
      if (a->nla_type == UNIX_DIAG_PEER && a->nla_len >= NLA_HDRLEN + sizeof(uint32_t)) {
        uint32_t peer;
        memcpy(&peer, data, sizeof(peer));
        out.peerInode = peer;
      } else if (a->nla_type == UNIX_DIAG_RQLEN && a->nla_len >= NLA_HDRLEN + sizeof(unix_diag_rqlen)) {
        unix_diag_rqlen q;
        memcpy(&q, data, sizeof(q));
        if (m->udiag_state == 10 /* TCP_LISTEN */) {
          out.pending = q.udiag_rqueue;
          out.backlog = q.udiag_wqueue;
        }
      }
    }
    return true;
  });
  return ok && found;
}

bool tcpListenDiag(int family, uint64_t inode, DiagInfo& out) {
  inet_diag_req_v2 req{};
  req.sdiag_family = static_cast<uint8_t>(family);
  req.sdiag_protocol = IPPROTO_TCP;
  req.idiag_states = 1u << 10;  // TCP_LISTEN
  bool found = false;
  bool ok = diagQuery(req, true, [&](nlmsghdr* h) {
    auto* m = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
    if (m->idiag_inode != inode) return false;
    found = true;
    out.state = m->idiag_state;
    out.pending = m->idiag_rqueue;  // a listener's accept queue and its limit (tcp_diag.c)
    out.backlog = m->idiag_wqueue;
    return true;
  });
  return ok && found;
}

}  // namespace mig::resources::sockets
