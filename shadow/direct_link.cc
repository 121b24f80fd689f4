// See direct_link.h.
#include "shadow/direct_link.h"

#include "shadow/cluster_key.h"
#include "shadow/wrapped_stream.h"

#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>
#include <kj/io.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <malloc.h>
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
  ~Released() {
    if (fd >= 0) release(own, fd);
  }
};

// A resumable link's handshake may take this long; the relay is waiting for it.
constexpr uint64_t kHandshakeMs = 10 * 1000;

// Whether the stream under a link ended (the relay closed it: the job left or ended
// there) rather than failed (a reset, a timeout): only a failure is waited out for a
// resumption, an end is the relay's word.
class EndSeen final : public WrappedStream {
 public:
  EndSeen(kj::Own<kj::AsyncIoStream> inner, bool& ended) : WrappedStream(kj::mv(inner)), ended_(ended) {}
  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    return inner_->tryRead(buffer, minBytes, maxBytes).then([this, minBytes](size_t n) {
      if (n < minBytes) ended_ = true;
      return n;
    });
  }
  kj::Maybe<int> getFd() const override { return inner_->getFd(); }

 private:
  bool& ended_;
};

// Small messages written in one turn of the event loop go out as one write (one
// record, one system call), made once the loop has nothing else to do before it
// waits. Cap'n Proto writes a connection's messages one after the other, each a
// system call: the link process lets go of held answers 32 at a time (JobCalls::hold),
// and their 32 Finish messages were 32 writes (strace: one more system call per
// forwarded call). A small write is taken at once (its bytes copied); a big one goes
// after what is pending, and is done when it is written. A write that fails fails the
// writes after it; nothing is lost that matters: the link process keeps each request
// until its answer comes, and sends it again on the resumed link.
class Batched final : public WrappedStream {
 public:
  explicit Batched(kj::Own<kj::AsyncIoStream> inner) : WrappedStream(kj::mv(inner)) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    return inner_->tryRead(buffer, minBytes, maxBytes);
  }
  kj::Maybe<int> getFd() const override { return inner_->getFd(); }

  kj::Promise<void> write(const void* buffer, size_t size) override {
    kj::ArrayPtr<const kj::byte> piece(static_cast<const kj::byte*>(buffer), size);
    return write(kj::arrayPtr(&piece, 1));
  }

  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    KJ_IF_MAYBE(e, failed_) { return kj::cp(*e); }
    size_t total = 0;
    for (auto& p : pieces) total += p.size();
    if (total >= kSmall) {
      // After what is pending, straight from the writer's pieces (no copy of a big one):
      // the writer keeps them until the write is done (Cap'n Proto's network drops a
      // write only with itself, and the network goes before the stream it writes to).
      flush();
      auto done = chain_.addBranch().then([this, pieces]() { return inner_->write(pieces); }).fork();
      chain_ = done.addBranch().catch_([this](kj::Exception&& e) { failed_ = kj::mv(e); }).fork();
      return done.addBranch();
    }
    for (auto& p : pieces) pending_.addAll(p);
    if (!queued_) {
      queued_ = true;
      last_ = kj::evalLast([this]() {
                queued_ = false;
                flush();
              }).eagerlyEvaluate(nullptr);
    }
    return kj::READY_NOW;
  }

  // After what is pending.
  void shutdownWrite() override {
    flush();
    chain_ = chain_.addBranch().then([this]() { inner_->shutdownWrite(); }).catch_([](kj::Exception&&) {}).fork();
  }

 private:
  static constexpr size_t kSmall = 16 * 1024;

  // What is pending goes behind the writes before it.
  void flush() {
    if (pending_.empty()) return;
    auto bytes = pending_.releaseAsArray();
    auto* begin = bytes.begin();
    const size_t size = bytes.size();
    chain_ = chain_.addBranch()
                 .then([this, begin, size]() { return inner_->write(begin, size); })
                 .attach(kj::mv(bytes))
                 .catch_([this](kj::Exception&& e) { failed_ = kj::mv(e); })
                 .fork();
  }

  kj::Vector<kj::byte> pending_;
  bool queued_ = false;
  kj::Maybe<kj::Exception> failed_;
  kj::ForkedPromise<void> chain_ = kj::Promise<void>(kj::READY_NOW).fork();  // the writes under way, in order
  kj::Promise<void> last_ = nullptr;  // the flush at the end of the turn
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

void keepCallBuffers() {
  // Both set: either one alone turns off glibc's own adjustment of the other.
  constexpr int kMmapAbove = 4 << 20;  // beyond any one call's buffer (rsc::kMaxMessage)
  constexpr int kKeptFree = 8 << 20;
  mallopt(M_MMAP_THRESHOLD, kMmapAbove);
  mallopt(M_TRIM_THRESHOLD, kKeptFree);
}

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

void watchLiveness(kj::AsyncIoStream& stream) {
  const int on = 1, idleS = 2, intervalS = 1, probes = 3;
  const unsigned int unackedMs = 5000;
  stream.setsockopt(SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  stream.setsockopt(IPPROTO_TCP, TCP_KEEPIDLE, &idleS, sizeof idleS);
  stream.setsockopt(IPPROTO_TCP, TCP_KEEPINTVL, &intervalS, sizeof intervalS);
  stream.setsockopt(IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
  stream.setsockopt(IPPROTO_TCP, TCP_USER_TIMEOUT, &unackedMs, sizeof unackedMs);
}

// One served connection of a resumable link, kept until it breaks or a newer one
// replaces it. Members in this order: the fd is unmarked after the stream closes it.
struct DirectLinkServer::Served {
  Served(OwnFds own, int fd) : released{own, fd} {}
  Released released;
  bool endOfStream = false;  // EndSeen's
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
};

DirectLinkServer::DirectLinkServer(kj::LowLevelAsyncIoProvider& low, kj::Timer& timer, kj::StringPtr host,
                                   LinkSecret secret, capnp::Capability::Client bootstrap, uint64_t acceptTimeoutMs,
                                   uint64_t lostAfterMs, OwnFds own, kj::Function<void(uint64_t)> onLost)
    : low_(low), timer_(timer), secret_(kj::mv(secret)), bootstrap_(kj::mv(bootstrap)), lostAfterMs_(lostAfterMs),
      own_(own), onLost_(kj::mv(onLost)) {
  listenFd_ = place(own, listenOn(host, port_));
  KJ_REQUIRE(listenFd_ >= 0, "direct link: no fd for the listening socket", strerror(errno));
  listener_ = low.wrapListenSocketFd(listenFd_, kTaken);
  accepting_ = acceptLoop().eagerlyEvaluate(nullptr);
  // A ticket not used in time is void, as serveDirectLink's.
  firstWait_ = timer.afterDelay(acceptTimeoutMs * kj::MILLISECONDS).then([this]() {
    if (links_ == 0) closeListener();
  }).eagerlyEvaluate(nullptr);
}

DirectLinkServer::DirectLinkServer(kj::LowLevelAsyncIoProvider& low, kj::Timer& timer, int listenFd, LinkSecret secret,
                                   capnp::Capability::Client bootstrap, uint64_t lostAfterMs, OwnFds own,
                                   kj::Function<void(uint64_t)> onLost)
    : low_(low), timer_(timer), secret_(kj::mv(secret)), bootstrap_(kj::mv(bootstrap)), lostAfterMs_(lostAfterMs),
      own_(own), onLost_(kj::mv(onLost)), listenFd_(listenFd), links_(1) {
  struct sockaddr_storage sa {};
  socklen_t len = sizeof sa;
  KJ_REQUIRE(getsockname(listenFd_, reinterpret_cast<struct sockaddr*>(&sa), &len) == 0,
             "direct link: the inherited listener", strerror(errno));
  port_ = ntohs(sa.ss_family == AF_INET6 ? reinterpret_cast<struct sockaddr_in6*>(&sa)->sin6_port
                                         : reinterpret_cast<struct sockaddr_in*>(&sa)->sin_port);
  fcntl(listenFd_, F_SETFD, FD_CLOEXEC);
  listener_ = low.wrapListenSocketFd(listenFd_, kTaken);
  accepting_ = acceptLoop().eagerlyEvaluate(nullptr);
  watchForLoss();
}

DirectLinkServer::~DirectLinkServer() noexcept(false) { closeListener(); }

void DirectLinkServer::closeListener() {
  accepting_ = nullptr;  // before the listener it waits on
  listener_ = nullptr;
  if (listenFd_ >= 0) release(own_, listenFd_);
  listenFd_ = -1;
}

kj::Promise<void> DirectLinkServer::acceptLoop() {
  KJ_IF_MAYBE(l, listener_) {
    if (voided_) return kj::NEVER_DONE;
    return (*l)->accept().then([this](kj::Own<kj::AsyncIoStream> raw) -> kj::Promise<void> {
      // Before the first link, one try at a time: a failed one voids the ticket before
      // the next is looked at.
      if (links_ == 0) return handshake(kj::mv(raw)).then([this]() { return acceptLoop(); });
      tasks_.add(handshake(kj::mv(raw)));  // several may be under way; the newest wins
      return acceptLoop();
    });
  }
  return kj::NEVER_DONE;
}

kj::Promise<void> DirectLinkServer::handshake(kj::Own<kj::AsyncIoStream> raw) {
  raw = ownStream(low_, own_, kj::mv(raw));
  watchLiveness(*raw);
  auto link = kj::heap<Served>(own_, KJ_ASSERT_NONNULL(raw->getFd()));
  kj::Promise<void> done = nullptr;
  link->stream = secured(kj::heap<EndSeen>(kj::mv(raw), link->endOfStream), SecureStream::Side::ACCEPTOR, secret_, done);
  return timer_.timeoutAfter(kHandshakeMs * kj::MILLISECONDS, kj::mv(done))
      .then([this, link = kj::mv(link)]() mutable { serve(kj::mv(link)); },
            [this](kj::Exception&&) {
              // Before the first link, one failed handshake voids the ticket (only its
              // holder may try); after it, a stranger's try does not stop a resumption.
              // (Not from within the accept loop that waits on this.)
              if (links_ == 0) {
                voided_ = true;
                tasks_.add(kj::evalLater([this]() { closeListener(); }));
              }
            });
}

void DirectLinkServer::serve(kj::Own<Served> link) {
  const uint32_t which = ++links_;
  lostWatch_ = nullptr;  // mended in time
  KJ_IF_MAYBE(old, link_) {
    // The relay found the old one broken first: its calls come again on this one.
    auto replaced = kj::mv(*old);
    tasks_.add(kj::evalLater([replaced = kj::mv(replaced)]() {}));
  }
  link->stream = kj::heap<Batched>(kj::mv(link->stream));
  link->network = kj::heap<capnp::TwoPartyVatNetwork>(*link->stream, capnp::rpc::twoparty::Side::SERVER);
  link->rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcServer(*link->network, bootstrap_));
  auto ended = link->network->onDisconnect();
  link_ = kj::mv(link);
  tasks_.add(ended.then([this, which]() { broke(which); }));
}

void DirectLinkServer::broke(uint32_t which) {
  if (which != links_) return;  // replaced already
  bool ended = false;
  KJ_IF_MAYBE(l, link_) {
    ended = (*l)->endOfStream;
    auto gone = kj::mv(*l);
    tasks_.add(kj::evalLater([gone = kj::mv(gone)]() {}));  // not from within its own promise
  }
  link_ = nullptr;
  if (!ended) watchForLoss();
}

void DirectLinkServer::watchForLoss() {
  if (lostAfterMs_ == 0) return;
  const kj::TimePoint since = timer_.now();
  lostWatch_ = timer_.afterDelay(lostAfterMs_ * kj::MILLISECONDS).then([this, since]() {
    onLost_((timer_.now() - since) / kj::MILLISECONDS);
  }).eagerlyEvaluate(nullptr);
}

DirectLink::DirectLink(kj::Own<kj::AsyncIoStream> stream)
    : stream_(kj::heap<Batched>(kj::mv(stream))), client_(*stream_), deputy_(client_.bootstrap().castAs<rpc::Deputy>()) {}

kj::Promise<kj::Own<DirectLink>> DirectLink::connect(kj::Network& network, kj::StringPtr address, LinkSecret secret,
                                                     kj::Timer& timer, uint64_t timeoutMs, bool watched) {
  auto linked = network.parseAddress(address)
                    .then([](kj::Own<kj::NetworkAddress> a) { return a->connect().attach(kj::mv(a)); })
                    .then([secret = kj::mv(secret), watched](kj::Own<kj::AsyncIoStream> raw) mutable {
                      const int one = 1;  // calls are small and waited for: no Nagle
                      raw->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                      if (watched) watchLiveness(*raw);
                      kj::Promise<void> handshake = nullptr;
                      auto s = secured(kj::mv(raw), SecureStream::Side::CONNECTOR, secret, handshake);
                      return handshake.then([s = kj::mv(s)]() mutable { return kj::heap<DirectLink>(kj::mv(s)); });
                    });
  return timer.timeoutAfter(timeoutMs * kj::MILLISECONDS, kj::mv(linked));
}

}  // namespace mig::shadow
