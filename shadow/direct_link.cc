// See direct_link.h.
#include "shadow/direct_link.h"

#include "shadow/cluster_key.h"

#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>
#include <kj/io.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <utility>

namespace mig::shadow {
namespace {

constexpr uint kTaken = kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                        kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                        kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK;

int place(const OwnFds& own, int fd) { return fd >= 0 && own.place != nullptr ? own.place(fd) : fd; }
void release(const OwnFds& own, int fd) {
  if (own.release != nullptr) own.release(fd);
}

// Marks `fd` as no longer the owner's once it is closed (a member declared before the
// stream that closes it: destroyed after it).
struct Released {
  OwnFds own;
  int fd;
  ~Released() { release(own, fd); }
};

// A listening TCP socket on `host` (numeric or a name; "[v6]" too), port chosen by the
// kernel: its fd, and the port in `port`.
int listenOn(kj::StringPtr host, uint16_t& port) {
  kj::String name = host.startsWith("[") && host.endsWith("]") ? kj::str(host.slice(1, host.size() - 1))
                                                                : kj::str(host);
  struct addrinfo hints {};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  struct addrinfo* res = nullptr;
  int rc = getaddrinfo(name.size() > 0 ? name.cStr() : nullptr, "0", &hints, &res);
  KJ_REQUIRE(rc == 0 && res != nullptr, "direct link: cannot resolve this host's address", host, gai_strerror(rc));
  KJ_DEFER(freeaddrinfo(res));
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  KJ_REQUIRE(fd >= 0, "direct link: socket", strerror(errno));
  kj::AutoCloseFd closer(fd);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  KJ_REQUIRE(bind(fd, res->ai_addr, res->ai_addrlen) == 0, "direct link: cannot listen on", host, strerror(errno));
  KJ_REQUIRE(listen(fd, 4) == 0, "direct link: listen", strerror(errno));
  struct sockaddr_storage bound {};
  socklen_t len = sizeof bound;
  KJ_REQUIRE(getsockname(fd, reinterpret_cast<struct sockaddr*>(&bound), &len) == 0, strerror(errno));
  port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return closer.release();
}

// An accepted connection moved to the owner's fd space (kj made it at the lowest free
// number, which may be one the job uses), without Nagle: calls are small and waited for.
kj::Own<kj::AsyncIoStream> ownStream(kj::LowLevelAsyncIoProvider& low, const OwnFds& own,
                                     kj::Own<kj::AsyncIoStream> accepted) {
  int fd = KJ_ASSERT_NONNULL(accepted->getFd());
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (own.place == nullptr) return accepted;
  int placed = own.place(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  KJ_REQUIRE(placed >= 0, "direct link: no fd for the connection", strerror(errno));
  accepted = nullptr;  // closes the low number
  return low.wrapSocketFd(placed, kTaken);
}

// A served link: the stream and the RPC system over it, kept until it breaks.
struct ServedLink {
  ServedLink(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client bootstrap, OwnFds own, int fd)
      : released{own, fd},
        stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
  Released released;
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

kj::Own<kj::AsyncIoStream> secured(kj::Own<kj::AsyncIoStream> raw, SecureStream::Side side, const LinkSecret& secret,
                                   kj::Promise<void>& handshake) {
  auto s = kj::heap<SecureStream>(kj::mv(raw), side, secret);
  handshake = s->handshake();
  return s;
}

}  // namespace

kj::Array<kj::byte> directLinkKey(const ClusterKey& key, uint64_t jobId, kj::ArrayPtr<const kj::byte> nonce) {
  auto msg = kj::heapArray<kj::byte>(sizeof(jobId) + nonce.size());
  memcpy(msg.begin(), &jobId, sizeof(jobId));
  if (nonce.size() > 0) memcpy(msg.begin() + sizeof(jobId), nonce.begin(), nonce.size());
  return key.proof("mig-direct-link", msg);
}

kj::String hostOf(kj::StringPtr address) {
  KJ_IF_MAYBE(colon, address.findLast(':')) { return kj::str(address.slice(0, *colon)); }
  return kj::str(address);
}

kj::Promise<uint16_t> serveDirectLink(kj::LowLevelAsyncIoProvider& low, kj::Timer& timer, kj::StringPtr host,
                                      LinkSecret secret, capnp::Capability::Client bootstrap, kj::TaskSet& tasks,
                                      uint64_t acceptTimeoutMs, OwnFds own) {
  uint16_t port = 0;
  int fd = place(own, listenOn(host, port));
  KJ_REQUIRE(fd >= 0, "direct link: no fd for the listening socket", strerror(errno));
  auto listener = low.wrapListenSocketFd(fd, kTaken);
  // One connection, and only one that holds the ticket's key: the listener is closed
  // once it is in, or when the time is up.
  auto in = listener->accept().then([&low, own, secret = kj::mv(secret)](kj::Own<kj::AsyncIoStream> raw) mutable {
    raw = ownStream(low, own, kj::mv(raw));
    int linkFd = KJ_ASSERT_NONNULL(raw->getFd());
    kj::Promise<void> handshake = nullptr;
    auto s = secured(kj::mv(raw), SecureStream::Side::ACCEPTOR, secret, handshake);
    return handshake.then([s = kj::mv(s), linkFd]() mutable { return std::make_pair(kj::mv(s), linkFd); });
  });
  auto bounded = timer.timeoutAfter(acceptTimeoutMs * kj::MILLISECONDS, kj::mv(in))
                     .attach(kj::mv(listener))
                     .attach(kj::defer([own, fd]() { release(own, fd); }));  // after the close
  tasks.add(bounded.then([bootstrap = kj::mv(bootstrap), own](auto linked) mutable {
    auto link = kj::heap<ServedLink>(kj::mv(linked.first), kj::mv(bootstrap), own, linked.second);
    auto ended = link->network.onDisconnect();
    return ended.attach(kj::mv(link));
  }));
  return port;
}

DirectLink::DirectLink(kj::Own<kj::AsyncIoStream> stream)
    : stream_(kj::mv(stream)), client_(*stream_), deputy_(client_.bootstrap().castAs<rpc::Deputy>()) {}

kj::Promise<kj::Own<DirectLink>> DirectLink::connect(kj::Network& network, kj::StringPtr address, LinkSecret secret,
                                                     kj::Timer& timer, uint64_t timeoutMs) {
  auto linked = network.parseAddress(address)
                    .then([](kj::Own<kj::NetworkAddress> a) { return a->connect().attach(kj::mv(a)); })
                    .then([secret = kj::mv(secret)](kj::Own<kj::AsyncIoStream> raw) mutable {
                      const int one = 1;  // calls are small and waited for: no Nagle
                      raw->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                      kj::Promise<void> handshake = nullptr;
                      auto s = secured(kj::mv(raw), SecureStream::Side::CONNECTOR, secret, handshake);
                      return handshake.then([s = kj::mv(s)]() mutable { return kj::heap<DirectLink>(kj::mv(s)); });
                    });
  return timer.timeoutAfter(timeoutMs * kj::MILLISECONDS, kj::mv(linked));
}

}  // namespace mig::shadow
