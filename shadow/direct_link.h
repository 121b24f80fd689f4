// The direct link home (issue 13): one Cap'n Proto connection per migrated job,
// between the relay on the host the job runs on and the job's deputy at home, so the
// job's calls no longer pass through the home shadowd (and survive its restart).
//
// Brokered by the shadowds over their logged-in, encrypted link: the relay asks home
// for a ticket (Node.directLink); home derives a key for this job and this ticket
// from the cluster key and hands it to the deputy over its owner-only Unix socket
// (Deputy.openDirectLink), the deputy listens for one connection, and home answers
// with the address and the key. The relay connects and both ends run the
// secure_stream handshake keyed with that key instead of the cluster key: only a
// holder of the ticket gets through, and neither the deputy nor the job ever holds
// the cluster key.
//
// A link that breaks (partition, reset) is resumed, not re-brokered: the deputy keeps
// listening on the ticket's port for the life of the ticket (DirectLinkServer), and
// the relay connects there again with the key it holds, with a short bounded backoff;
// both ends watch the connection with TCP keepalive and a user timeout, so a dead
// link is noticed in seconds, not after TCP's retransmission backoff. A link broken
// longer than the limit home set is given up by both ends: the job is lost. What
// makes a resent call run once is the deputy's (deputy/answered.h).
#pragma once

#include "shadow/mig.capnp.h"
#include "shadow/secure_stream.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/timer.h>

namespace mig::shadow {

class ClusterKey;

// The ticket's key: HMAC-SHA256(cluster key, "mig-direct-link" || job id || nonce).
kj::Array<kj::byte> directLinkKey(const ClusterKey& key, uint64_t jobId, kj::ArrayPtr<const kj::byte> nonce);

// The host part of "host:port" ("[::1]:7070" -> "[::1]").
kj::String hostOf(kj::StringPtr address);

// Called first in both ends' main (mig-link, mig-deputy): keeps the buffers of big
// calls (up to rsc::kMaxMessage each, several per call: the request, its Cap'n Proto
// message, the sealed record) on the heap for the next call. By default glibc gives
// freed memory above its trim threshold back at once, so every 1 MiB write mapped and
// faulted in fresh zeroed pages again, three times over in the link process (a third
// of its CPU time per MiB under perf). Keeps at most 8 MiB unused.
void keepCallBuffers();

// Where the deputy keeps its own fds (deputy/own_fds.h): `place` moves a new fd there
// (closing the one given; -1 on failure), `release` unmarks one once closed. Null: as
// the kernel gives them.
struct OwnFds {
  int (*place)(int fd) = nullptr;
  void (*release)(int fd) = nullptr;
};

// Deputy side: listens on `host` (port chosen by the kernel), and serves `bootstrap`
// on the first connection that completes the handshake keyed with `secret` within
// `acceptTimeoutMs`; the listener closes after it (or the timeout). Returns the port;
// throws (one line) when it cannot listen. The link lives in `tasks` until it breaks.
kj::Promise<uint16_t> serveDirectLink(kj::LowLevelAsyncIoProvider& low, kj::Timer& timer, kj::StringPtr host,
                                      LinkSecret secret, capnp::Capability::Client bootstrap, kj::TaskSet& tasks,
                                      uint64_t acceptTimeoutMs, OwnFds own = {});

// How soon either end of a resumable link takes a silent connection as broken: TCP
// keepalive probes after 2 s of silence, 1 s apart, 3 of them; data unacknowledged for
// 5 s (TCP_USER_TIMEOUT). On a connected TCP stream.
void watchLiveness(kj::AsyncIoStream& stream);

// Deputy side, resumable (the deputy's, for each ticket): listens on `host` (port
// chosen by the kernel) for as long as this object lives, and serves `bootstrap` on
// the newest connection that completes the handshake keyed with `secret`; a newer
// one replaces the older (the relay resumes a link it found broken before the deputy
// did). The first must come within `acceptTimeoutMs`, and until it has, a failed
// handshake voids the ticket (closes the port), as serveDirectLink does. A link that
// breaks without the relay closing it (a reset or a timeout, not an end of stream) and
// is not resumed within `lostAfterMs` calls `onLost(ms it was down)`, once.
class DirectLinkServer {
 public:
  DirectLinkServer(kj::LowLevelAsyncIoProvider& low, kj::Timer& timer, kj::StringPtr host, LinkSecret secret,
                   capnp::Capability::Client bootstrap, uint64_t acceptTimeoutMs, uint64_t lostAfterMs, OwnFds own,
                   kj::Function<void(uint64_t downMs)> onLost);
  // The same ticket's listening socket `listenFd`, inherited across an exec (a deputy
  // back after a failed hop home, deputy/homecoming.h): its link counts as broken from
  // now, so the relay's resumption is waited for as after any break.
  DirectLinkServer(kj::LowLevelAsyncIoProvider& low, kj::Timer& timer, int listenFd, LinkSecret secret,
                   capnp::Capability::Client bootstrap, uint64_t lostAfterMs, OwnFds own,
                   kj::Function<void(uint64_t downMs)> onLost);
  ~DirectLinkServer() noexcept(false);
  uint16_t port() const { return port_; }
  // What the inheriting constructor is given (-1: no listener any more).
  int listenFd() const { return listenFd_; }
  const LinkSecret& secret() const { return secret_; }
  uint64_t lostAfterMs() const { return lostAfterMs_; }
  // Connections served so far (1: the first; more: resumptions).
  uint32_t links() const { return links_; }

 private:
  struct Served;
  kj::Promise<void> acceptLoop();
  kj::Promise<void> handshake(kj::Own<kj::AsyncIoStream> raw);
  void serve(kj::Own<Served> link);
  void broke(uint32_t which);
  void watchForLoss();
  void closeListener();

  kj::LowLevelAsyncIoProvider& low_;
  kj::Timer& timer_;
  LinkSecret secret_;
  capnp::Capability::Client bootstrap_;
  uint64_t lostAfterMs_;
  OwnFds own_;
  kj::Function<void(uint64_t)> onLost_;
  uint16_t port_ = 0;
  int listenFd_ = -1;
  uint32_t links_ = 0;
  bool voided_ = false;  // a failed handshake before the first link
  kj::Maybe<kj::Own<Served>> link_;
  kj::Maybe<kj::Own<kj::ConnectionReceiver>> listener_;
  kj::Promise<void> accepting_ = nullptr;  // after listener_: destroyed before it
  kj::Promise<void> lostWatch_ = nullptr;
  kj::Promise<void> firstWait_ = nullptr;
  struct Ignore final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  } ignore_;
  kj::TaskSet tasks_{ignore_};  // last: destroyed first, with what it runs
};

// Relay side: one direct link to a deputy.
class DirectLink {
 public:
  // Connects to `address`, runs the handshake keyed with `secret`. `watched`: the
  // connection is watched for liveness (watchLiveness), for a link that resumes.
  static kj::Promise<kj::Own<DirectLink>> connect(kj::Network& network, kj::StringPtr address, LinkSecret secret,
                                                   kj::Timer& timer, uint64_t timeoutMs, bool watched = false);
  explicit DirectLink(kj::Own<kj::AsyncIoStream> stream);
  rpc::Deputy::Client deputy() { return deputy_; }
  kj::Promise<void> onDisconnect() { return client_.onDisconnect(); }

 private:
  kj::Own<kj::AsyncIoStream> stream_;
  capnp::TwoPartyClient client_;
  rpc::Deputy::Client deputy_;
};

}  // namespace mig::shadow
