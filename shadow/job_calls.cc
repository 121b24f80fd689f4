// See job_calls.h.
#include "shadow/job_calls.h"

#include "rsc/forward_table.h"
#include "rsc/wire.h"
#include "shadow/daemon.h"
#include "shadow/direct_link.h"
#include "shadow/error.h"

#include <cerrno>
#include <csignal>
#include <cstring>

namespace mig::shadow {
namespace {

// Memory the waiting writes may take here before the job's connections stop being read.
constexpr uint64_t kMaxQueuedBytes = 16u << 20;

// What a waiting write costs: its bytes and its bookkeeping (many small writes are
// mostly bookkeeping).
uint64_t queueCost(uint64_t requestSize) { return requestSize + 128; }
// A write whose number was taken but which never arrived (its thread's connection
// broke in between) must not hold the others back for ever.
constexpr uint64_t kGapTimeoutMs = 30 * 1000;
// A direct link not up by then is given up for this time: the calls go through the
// shadowds. The ticket may wait for the deputy to register at home (it starts as the
// job leaves), the connection only for the handshake.
constexpr uint64_t kTicketMs = 30 * 1000;
constexpr uint64_t kDirectLinkMs = 10 * 1000;
// Resuming a broken direct link: each try may take this long (connect and handshake;
// a host cut off answers nothing, so this bounds a try, not TCP's SYN backoff), and
// the pause between tries doubles from the first to the last figure. A link that heals
// is thus back within about 3 s. The limit after which the link is given up is home's
// (Node.directLink's lostAfterMs).
constexpr uint64_t kResumeTryMs = 2000;
constexpr uint64_t kRelayedTryMs = 4000;
constexpr uint64_t kResumeFirstPauseMs = 100;
constexpr uint64_t kResumeLastPauseMs = 1000;
// Home's shadowd not knowing the job (restarted, or killed mid-hop, before the job's
// deputy registered with the new one): its calls wait this long for it (homeNotReady).
// Home not reached at all before the first link was made waits up to the link's limit.
constexpr uint64_t kHomeUnknownMs = 30 * 1000;
constexpr uint64_t kHomeUnknownPauseMs = 250;
constexpr uint64_t kHomeAwayPauseMs = 1000;
// Answers held before their Finish messages go (JobCalls::hold).
constexpr size_t kHeldAnswers = 32;
constexpr uint64_t kHeldAnswerBytes = 1u << 20;

// A call's Cap'n Proto message sized for its request: without the size it starts with
// capnp's 8 KiB first segment (zeroed, then freed, on every call) and a request that
// does not fit gets a second segment besides.
capnp::MessageSize sized(kj::ArrayPtr<const kj::byte> request) {
  return capnp::MessageSize{request.size() / sizeof(capnp::word) + 4, 0};
}

kj::Array<kj::byte> eioReply(kj::ArrayPtr<const kj::byte> request) {
  rsc::ReplyHeader reply{};
  reply.magic = rsc::kReplyMagic;
  reply.length = sizeof(reply);
  if (request.size() >= sizeof(rsc::RequestHeader)) {
    memcpy(&reply.seq, request.begin() + offsetof(rsc::RequestHeader, seq), sizeof(reply.seq));
  }
  reply.result = -1;
  reply.error = EIO;
  return kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(&reply), sizeof(reply));
}

}  // namespace

JobCalls::JobCalls(Daemon& d, uint64_t jobId, kj::StringPtr home, kj::ArrayPtr<const kj::byte> token)
    : d_(d), jobId_(jobId), home_(kj::str(home)), token_(kj::heapArray<kj::byte>(token)),
      pushed_(kj::heap<PushedReads>(*this)) {}

rpc::Deputy::Client JobCalls::deputy() {
  KJ_IF_MAYBE(dep, deputy_) { return *dep; }
  finished_.clear();  // of the link that failed
  heldBytes_ = 0;
  // A link that failed a call is done with: the next one is asked for afresh.
  linkWatch_ = nullptr;  // before the link it watches
  dropLinks();
  auto self = kj::addRef(*this);
  auto& timer = d_.io().provider->getTimer();
  if (!d_.config().directLink) {
    // Through home's shadowd, on a login of the job's own that resumes when it breaks.
    rpc::Deputy::Client relayed(timer.timeoutAfter(kTicketMs * kj::MILLISECONDS, relayedLink(kDirectLinkMs))
                                    .then([this](Relayed link) {
                                      d_.log(kj::str("job ", jobId_, ": its calls go through home's shadowd (",
                                                     home_, ", --no-direct-link)"));
                                      rpc::Deputy::Client dep = link.deputy;
                                      // Home's limit for the job, which home keeps too.
                                      const uint64_t limitMs =
                                          link.lostAfterMs > 0 ? link.lostAfterMs : d_.config().linkLostAfterMs;
                                      resume_ = Resume{kj::str(home_), nullptr, d_.config().linkMode, limitMs, true};
                                      installRelayed(kj::mv(link));
                                      return dep;
                                    })
                                    .attach(kj::mv(self)));
    deputy_ = relayed;
    return relayed;
  }
  // Promise pipelining: calls may be sent before the login to home completes.
  rpc::Node::Client home(d_.peer(home_));
  auto req = home.deputyRequest();
  req.setJobId(jobId_);
  req.setToken(token_);
  req.setLocation(d_.address());
  auto sent = req.send();
  rpc::Deputy::Client relayed = sent.getDeputy();
  stops_ = sent.getStops();
  // The direct link (direct_link.h): calls wait for it (one round trip more, once);
  // where it cannot be made they go through the shadowds as before.
  auto ticket = home.directLinkRequest();
  ticket.setJobId(jobId_);
  ticket.setToken(token_);
  auto direct = timer.timeoutAfter(kTicketMs * kj::MILLISECONDS, ticket.send())
                    .then([this](capnp::Response<rpc::Node::DirectLinkResults> r) {
                      LinkSecret secret{kj::heapArray<kj::byte>(r.getKey()), d_.config().linkMode};
                      const uint64_t lostAfterMs = r.getLostAfterMs();  // 0: home does not resume links
                      // Home's host as this host reaches it (the ticket's own may be a
                      // wildcard or a name only home knows), at the deputy's port.
                      kj::StringPtr given = r.getAddress();
                      KJ_IF_MAYBE(colon, given.findLast(':')) { given = given.slice(*colon + 1); }
                      auto address = kj::str(hostOf(home_), ":", given);
                      auto& io = *d_.io().provider;
                      auto key = kj::heapArray<kj::byte>(secret.key);
                      return DirectLink::connect(io.getNetwork(), address, kj::mv(secret), io.getTimer(), kDirectLinkMs,
                                                 lostAfterMs > 0)
                          .then([this, address = kj::mv(address), key = kj::mv(key),
                                 lostAfterMs](kj::Own<DirectLink> link) mutable {
                            d_.log(kj::str("job ", jobId_, ": direct link to its deputy at ", address));
                            rpc::Deputy::Client dep = link->deputy();
                            if (lostAfterMs > 0) {
                              resume_ = Resume{kj::mv(address), kj::mv(key), d_.config().linkMode, lostAfterMs, false};
                              installDirect(kj::mv(link));
                            } else {
                              direct_ = kj::mv(link);
                            }
                            return dep;
                          });
                    })
                    .catch_([this, relayed](kj::Exception&& e) mutable {
                      d_.log(kj::str("job ", jobId_, ": no direct link to its deputy (", oneLine(e.getDescription()),
                                     "): its calls go through the shadowds"));
                      return relayed;
                    })
                    .attach(kj::mv(self));
  rpc::Deputy::Client deputy(kj::mv(direct));
  deputy_ = deputy;
  return deputy;
}

// A login to home's shadowd of the job's own (not shared with anything else this
// process asks home, so that its liveness is the job's link's) and the deputy through it.
kj::Promise<JobCalls::Relayed> JobCalls::relayedLink(uint64_t timeoutMs) {
  return loginToPeer(d_.io(), d_.key(), d_.config().linkMode, d_.resolveNode(home_), timeoutMs, true)
      .then([this](kj::Own<PeerLink> login) {
        auto req = login->node.deputyRequest();
        req.setJobId(jobId_);
        req.setToken(token_);
        req.setLocation(d_.address());
        req.setRelayed(true);  // home watches this login as the job's link (relayed_link.cc)
        return req.send().then([login = kj::mv(login)](capnp::Response<rpc::Node::DeputyResults> r) mutable {
          return Relayed{kj::mv(login), r.getDeputy(), r.getLostAfterMs(), r.getStops()};
        });
      });
}

void JobCalls::installDirect(kj::Own<DirectLink> link) {
  rpc::Deputy::Client dep = link->deputy();
  auto disconnected = link->onDisconnect();
  dropLinks();
  direct_ = kj::mv(link);
  installed(kj::mv(dep), kj::mv(disconnected));
}

void JobCalls::installRelayed(Relayed link) {
  auto disconnected = link.login->client->onDisconnect();
  dropLinks();
  stops_ = kj::mv(link.stops);
  relayed_ = kj::mv(link.login);
  installed(kj::mv(link.deputy), kj::mv(disconnected));
}

// The links before (not from within their own callbacks).
void JobCalls::dropLinks() {
  KJ_IF_MAYBE(old, direct_) {
    d_.tasks().add(kj::evalLater([old = kj::mv(*old)]() {}));
    direct_ = nullptr;
  }
  KJ_IF_MAYBE(old, relayed_) {
    d_.tasks().add(kj::evalLater([old = kj::mv(*old)]() {}));
    relayed_ = nullptr;
  }
}

kj::StringPtr JobCalls::linkName() const {
  KJ_IF_MAYBE(r, resume_) {
    if (r->relayed) return "link home through its shadowd";
  }
  return "direct link home";
}

// A link is up (the first, or a resumed one): calls go over it from now on, and
// whoever waited for it sends again.
void JobCalls::installed(rpc::Deputy::Client dep, kj::Promise<void> disconnected) {
  const uint64_t generation = ++generation_;
  linkWatch_ = disconnected.then([this, generation]() { broken(generation); }).eagerlyEvaluate(nullptr);
  deputy_ = dep;
  finished_.clear();  // of the link before
  heldBytes_ = 0;
  relinking_ = false;
  for (auto& w : linkWaiters_) w->fulfill();
  linkWaiters_.clear();
}

void JobCalls::broken(uint64_t generation) {
  if (generation != generation_ || lost_) return;  // resumed already
  // The job's process is gone here and nothing of it waits: its end (told home) or its
  // departure ends the link; a call that still comes resumes it then.
  if (started_ && connections_ == 0 && idle()) return;
  startRelink();
}

// Only a broken connection is mended by resending; anything else the deputy threw
// would be thrown again.
bool JobCalls::resumes(const kj::Exception& e) const {
  return e.getType() == kj::Exception::Type::DISCONNECTED && resume_ != nullptr && !lost_;
}

void JobCalls::startRelink() {
  if (relinking_ || lost_ || resume_ == nullptr) return;
  relinking_ = true;
  downSince_ = d_.io().provider->getTimer().now();
  d_.log(kj::str("job ", jobId_, ": its ", linkName(), " broke; resuming it (given up after ",
                 KJ_ASSERT_NONNULL(resume_).lostAfterMs / 1000.0, " s)"));
  relinkLoop_ = relink(kResumeFirstPauseMs).eagerlyEvaluate([this](kj::Exception&& e) {
    d_.log(kj::str("job ", jobId_, ": resuming its ", linkName(), " failed: ", oneLine(e.getDescription())));
  });
}

kj::Promise<void> JobCalls::relink(uint64_t pauseMs) {
  auto& r = KJ_ASSERT_NONNULL(resume_);
  auto& timer = d_.io().provider->getTimer();
  const uint64_t downMs = (timer.now() - downSince_) / kj::MILLISECONDS;
  if (downMs >= r.lostAfterMs) {
    giveUp(downMs);
    return kj::READY_NOW;
  }
  // A try never runs past the limit. Through home's shadowd a try is a login and a
  // round trip more than the direct link's handshake.
  const uint64_t tryMs = kj::min(r.relayed ? kRelayedTryMs : kResumeTryMs, r.lostAfterMs - downMs);
  kj::Promise<void> attempt = nullptr;
  if (r.relayed) {
    attempt = timer.timeoutAfter(tryMs * kj::MILLISECONDS, relayedLink(tryMs)).then([this](Relayed link) {
      installRelayed(kj::mv(link));
    });
  } else {
    LinkSecret secret{kj::heapArray<kj::byte>(r.key), r.mode};
    attempt = DirectLink::connect(d_.io().provider->getNetwork(), r.address, kj::mv(secret), timer, tryMs, true)
                  .then([this](kj::Own<DirectLink> link) { installDirect(kj::mv(link)); });
  }
  return attempt.then(
      [this]() -> kj::Promise<void> {
        const double downS = (d_.io().provider->getTimer().now() - downSince_) / kj::MILLISECONDS / 1000.0;
        d_.log(kj::str("job ", jobId_, ": its ", linkName(), " resumed after ", downS, " s; calls left unanswered go again"));
        return kj::READY_NOW;
      },
      [this, pauseMs](kj::Exception&&) -> kj::Promise<void> {
        return d_.io().provider->getTimer().afterDelay(pauseMs * kj::MILLISECONDS).then([this, pauseMs]() {
          return relink(kj::min(pauseMs * 2, kResumeLastPauseMs));
        });
      });
}

// Broken past home's limit: the deputy at home has given the job up too (it ended
// with status 87, docs/design.md). The job must not run on unreachable: it is killed
// here, and whatever waits is answered EIO.
void JobCalls::giveUp(uint64_t downMs) {
  lost_ = true;
  relinking_ = false;
  d_.log(kj::str("job ", jobId_, ": its ", linkName(), " stayed broken for ", downMs / 1000.0,
                 " s, past the limit: the job is lost; killing it here"));
  // Only while its connections show it alive: a PID of an ended job may be reused.
  KJ_IF_MAYBE(job, d_.hostedJobs().find(jobId_)) {
    if ((*job)->realPid > 0 && connections_ > 0) kill((*job)->realPid, SIGKILL);
  }
  for (auto& w : linkWaiters_) w->fulfill();
  linkWaiters_.clear();
}

kj::Promise<void> JobCalls::nextLink(uint64_t generation) {
  if (generation_ > generation || lost_) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  linkWaiters_.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

kj::Promise<void> JobCalls::tellEndedDirectly(int32_t status) {
  KJ_IF_MAYBE(link, direct_) {
    auto req = (*link)->deputy().endedRequest();
    req.setStatus(status);
    d_.log(kj::str("job ", jobId_, ": its end told to its deputy over the direct link"));
    // The deputy exits while answering: a broken connection is success here.
    return req.send().ignoreResult().catch_([](kj::Exception&&) {});
  }
  return KJ_EXCEPTION(DISCONNECTED, "no direct link to the deputy");
}

kj::Promise<void> JobCalls::tellStop(int signal) {
  // Asks home for the deputy, and its JobStops with it, if not yet asked. Held until it
  // resolves, as a call holds it: the link's own callbacks replace deputy_ (the only
  // other holder) while the promise behind it fires.
  rpc::Deputy::Client dep = deputy();
  d_.tasks().add(dep.whenResolved().attach(kj::cp(dep)).catch_([](kj::Exception&&) {}));
  KJ_IF_MAYBE(stops, stops_) {
    if (signal == SIGCONT) return stops->continuedRequest().send().ignoreResult();
    auto req = stops->stoppedRequest();
    req.setSignal(signal);
    return req.send().ignoreResult();
  }
  return KJ_EXCEPTION(DISCONNECTED, "home has not given where to tell the job's stops yet");
}

void JobCalls::connected(uint64_t order, bool numbers) {
  ++connections_;
  pushed_->resume();  // a checkpoint's barrier is behind (pushed_reads.h)
  if (!started_ && numbers) {
    started_ = true;
    arrived(order);
    for (auto& f : startWaiters_) f->fulfill();
    startWaiters_.clear();
    wakeWaiters();  // calls of a process born away that came first
  }
}

kj::Promise<void> JobCalls::started() {
  if (started_) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  startWaiters_.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

// The relay's end of a readiness stand-in: tokens are written into it one after the
// other; whatever the job sends (nothing, normally) is read and dropped until it ends.
class StandInEnd final : public kj::Refcounted {
 public:
  explicit StandInEnd(kj::Own<kj::AsyncIoStream> stream) : stream_(kj::mv(stream)) {}

  // Resolves once the token is in the connection (or the job closed it): the deputy
  // answers a read only after the tokens it sent are there (deputy/readiness.h).
  kj::Promise<void> token() {
    auto written = writing_.then([this]() { return stream_->write(&kToken, 1); })
                       .eagerlyEvaluate([](kj::Exception&&) {})  // the job closed it: no one to tell
                       .fork();
    writing_ = written.addBranch();
    return written.addBranch().attach(kj::addRef(*this));
  }

  // Its first watch at home was answered or failed, or it ended before that: it is
  // waited for no more (JobCalls::setupProblems).
  bool settled = false;

  kj::Promise<void> ended() {
    return stream_->tryRead(sink_, 1, sizeof(sink_))
        .then([this](size_t n) -> kj::Promise<void> { return n == 0 ? kj::READY_NOW : ended(); },
              [](kj::Exception&&) {});
  }

 private:
  static constexpr kj::byte kToken = 1;
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Promise<void> writing_ = kj::READY_NOW;
  kj::byte sink_[64];
};

namespace {

// A token for the stand-in of home fd `fd`; one of a stream whose reads are pushed may
// wait here until bytes for it are (PushedReads::token).
class ReadinessImpl final : public rpc::Readiness::Server {
 public:
  ReadinessImpl(kj::Own<PushedReads::Gate> gate, int32_t fd, kj::Own<StandInEnd> end)
      : gate_(kj::mv(gate)), fd_(fd), end_(kj::mv(end)) {}
  kj::Promise<void> ready(ReadyContext) override {
    if (gate_->pushed == nullptr) return end_->token();
    return gate_->pushed->token(fd_, [end = kj::addRef(*end_)]() mutable { return end->token(); });
  }

 private:
  kj::Own<PushedReads::Gate> gate_;  // not the JobCalls: its link holds this capability
  int32_t fd_;
  kj::Own<StandInEnd> end_;
};

}  // namespace

kj::Promise<void> JobCalls::serveStandIn(int32_t fd, kj::Own<kj::AsyncIoStream> stream) {
  auto end = kj::refcounted<StandInEnd>(kj::mv(stream));
  ++watchesPending_;
  auto watching = started().then([this, fd, end = kj::addRef(*end)]() mutable {
    return watchAtHome(fd, kj::mv(end));
  });
  // A stand-in the job closes before its watch is answered (a loop that opens and
  // closes a home FIFO each round, moved with it open) has nothing left to wait for.
  auto ended = end->ended().then([this, end = kj::addRef(*end)]() mutable { watchSettled(*end); });
  return ended.exclusiveJoin(kj::mv(watching)).attach(kj::mv(end));
}

// The deputy watches `fd` for the stand-in `end` for as long as the link it was asked
// on lives; a resumed link is asked again (the old watch went with the old link).
kj::Promise<void> JobCalls::watchAtHome(int32_t fd, kj::Own<StandInEnd> end) {
  if (lost_) return kj::NEVER_DONE;
  const uint64_t generation = generation_;
  auto req = deputy().watchRequest();
  req.setFd(fd);
  req.setReadiness(kj::heap<ReadinessImpl>(pushed_->gate(), fd, kj::addRef(*end)));
  return req.send().then(
      [this, fd, end = kj::addRef(*end)](capnp::Response<rpc::Deputy::WatchResults>&& watch) mutable
      -> kj::Promise<void> {
        watchSettled(*end);
        reachedHome();
        // Held (and so watched at home) until the stand-in ends, or its link is resumed.
        if (resume_ == nullptr) return kj::Promise<void>(kj::NEVER_DONE).attach(kj::mv(watch));
        return nextLink(generation_).attach(kj::mv(watch)).then([this, fd, end = kj::mv(end)]() mutable {
          return watchAtHome(fd, kj::mv(end));
        });
      },
      [this, fd, generation, end = kj::addRef(*end)](kj::Exception&& e) mutable -> kj::Promise<void> {
        if (resumes(e)) {
          startRelink();
          return nextLink(generation).then([this, fd, end = kj::mv(end)]() mutable {
            return watchAtHome(fd, kj::mv(end));
          });
        }
        KJ_IF_MAYBE(pause, homeNotReady(e)) {
          return pause->then([this, fd, end = kj::mv(end)]() mutable { return watchAtHome(fd, kj::mv(end)); });
        }
        if (end->settled) return kj::NEVER_DONE;
        // The stand-in stays open without tokens: the job's poll never wakes for this
        // fd, but its calls on it still work.
        auto why = kj::str("its home fd ", fd, " cannot be watched (", oneLine(e.getDescription()),
                           "): poll and epoll on it will not wake");
        d_.log(kj::str("job ", jobId_, ": ", why));
        watchProblems_.add(kj::mv(why));
        watchSettled(*end);
        return kj::NEVER_DONE;
      });
}

void JobCalls::watchSettled(StandInEnd& end) {
  if (end.settled) return;
  end.settled = true;
  if (--watchesPending_ > 0) return;
  for (auto& f : watchWaiters_) f->fulfill();
  watchWaiters_.clear();
}

kj::Promise<kj::String> JobCalls::setupProblems() {
  return started().then([this]() -> kj::Promise<void> {
                    if (watchesPending_ == 0) return kj::READY_NOW;
                    auto paf = kj::newPromiseAndFulfiller<void>();
                    watchWaiters_.add(kj::mv(paf.fulfiller));
                    return kj::mv(paf.promise);
                  })
      .then([this]() { return kj::strArray(watchProblems_, "; "); });
}

void JobCalls::disconnected() {
  // With nobody left to send a missing write, stop waiting for it.
  if (--connections_ == 0 && !early_.empty()) arrived(*early_.rbegin());
  pump();
  wakeWaiters();
}

void JobCalls::write(const rsc::PipelinedWrite& w, kj::Array<kj::byte> request, kj::Own<CallOrigin> origin) {
  queuedBytes_ += queueCost(request.size());
  (w.file ? fileWrites_ : streamWrites_).insert(w.order);
  (w.file ? files_ : streams_).emplace(w.order, Write{w, kj::mv(request), kj::mv(origin)});
  if (w.order == arrived_ + 1) {
    arrived(w.order);
  } else if (w.order > arrived_) {
    early_.insert(w.order);  // another thread's write before it is on its way
    watchForGap();
  }
  pump();
  wakeWaiters();
}

// Every write up to `order` has come (or will not): so have the ones come early after it.
void JobCalls::arrived(uint64_t order) {
  if (order > arrived_) arrived_ = order;
  while (!early_.empty() && *early_.begin() <= arrived_ + 1) {
    if (*early_.begin() > arrived_) arrived_ = *early_.begin();
    early_.erase(early_.begin());
  }
}

uint64_t JobCalls::ranUpTo(bool filesOnly) const {
  uint64_t upTo = arrived_;
  if (!fileWrites_.empty()) upTo = kj::min(upTo, *fileWrites_.begin() - 1);
  if (!filesOnly && !streamWrites_.empty()) upTo = kj::min(upTo, *streamWrites_.begin() - 1);
  return upTo;
}

bool JobCalls::idle() const {
  return files_.empty() && streams_.empty() && inFlight_.empty() && streamInFlight_ == nullptr;
}

kj::Promise<void> JobCalls::room() {
  if (queuedBytes_ <= kMaxQueuedBytes) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  roomWaiters_.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

kj::Promise<void> JobCalls::ranUpTo(uint64_t order, bool filesOnly) {
  if (order <= ranUpTo(filesOnly)) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  (filesOnly ? fileWaiters_ : ranWaiters_).emplace(order, kj::mv(paf.fulfiller));
  watchForGap();
  return kj::mv(paf.promise);
}

kj::Promise<kj::Array<kj::byte>> JobCalls::call(kj::Array<kj::byte> request) {
  return pushed_->call(kj::mv(request)).attach(kj::addRef(*this));
}

kj::Promise<void> JobCalls::settleReads() { return pushed_->settle().attach(kj::addRef(*this)); }

kj::Promise<kj::Array<kj::byte>> JobCalls::callHome(kj::Array<kj::byte> request) {
  rsc::RequestHeader h;
  memcpy(&h, request.begin(), sizeof(h));
  auto self = kj::addRef(*this);
  const bool filesOnly = (h.flags & rsc::kFileWrite) != 0;
  if (filesOnly) {
    h.flags &= ~rsc::kFileWrite;
    memcpy(request.begin(), &h, sizeof(h));
  }
  return ranUpTo(h.order, filesOnly).then([this, request = kj::mv(request)]() mutable {
    noteClose(request);
    return send(kj::mv(request));
  }).attach(kj::mv(self));
}

kj::Promise<kj::Array<kj::byte>> JobCalls::send(kj::Array<kj::byte> request) {
  if (lost_) return eioReply(request);
  const uint64_t generation = generation_;
  auto req = deputy().callRequest(sized(request));
  req.setRequest(request);
  return req.send().then(
      [this](capnp::Response<rpc::Deputy::CallResults> r) -> kj::Promise<kj::Array<kj::byte>> {
        auto reply = kj::heapArray<kj::byte>(r.getReply());
        hold(kj::mv(r));
        reachedHome();
        return kj::mv(reply);
      },
      [this, generation, request = kj::mv(request)](kj::Exception&& e) mutable -> kj::Promise<kj::Array<kj::byte>> {
        if (resumes(e)) {
          // The link broke before the answer came: the same request goes again once it
          // is resumed, and the deputy answers it from the run it had, if it had one.
          startRelink();
          return nextLink(generation).then([this, request = kj::mv(request)]() mutable { return send(kj::mv(request)); });
        }
        KJ_IF_MAYBE(pause, homeNotReady(e)) {
          return pause->then([this, request = kj::mv(request)]() mutable { return send(kj::mv(request)); });
        }
        // Home unreachable: answer EIO, and connect afresh for the next call.
        deputy_ = nullptr;
        d_.log(kj::str("job ", jobId_, ": a call home failed: ", e.getDescription()));
        return eioReply(request);
      });
}

void JobCalls::cancel(uint32_t thread, uint64_t seq) {
  if (lost_ || pushed_->cancel(thread, seq)) return;  // a read waiting here for pushed bytes: ended here
  auto req = deputy().cancelRequest();
  req.setThread(thread);
  req.setSeq(seq);
  d_.tasks().add(req.send().ignoreResult().catch_([this](kj::Exception&& e) {
    d_.log(kj::str("job ", jobId_, ": a cancel of a call home failed: ", e.getDescription()));
  }).attach(kj::addRef(*this)));
}

// A call failed before reaching the deputy, for a reason that may pass; the same request
// may go again (a call that did reach it is answered from its run, deputy/answered.h):
//  - home's shadowd answered that it does not know the job: it was restarted (or killed
//    in the middle of the hop that brought the job here) and the job's deputy has not
//    registered with the new one yet: for up to kHomeUnknownMs from the first such
//    answer; after that (home really has no such job) it fails as before;
//  - no link home was ever made and home could not be reached (its shadowd down since the
//    hop, so no ticket and no relay): for up to the link's limit, as a broken link
//    waits (the limit is home's, not known yet: this host's --link-lost-after).
// Each time after a pause, on a link asked for afresh.
kj::Maybe<kj::Promise<void>> JobCalls::homeNotReady(const kj::Exception& e) {
  if (lost_) return nullptr;
  const bool unknown = strstr(e.getDescription().cStr(), kUnknownJob) != nullptr;
  // Only a home not reached: an error home sent (the deputy's watch refused, say) came
  // from there, and Cap'n Proto marks it so.
  const bool fromHome = strstr(e.getDescription().cStr(), "remote exception: ") != nullptr;
  if (!unknown && (reached_ || fromHome)) return nullptr;
  auto& timer = d_.io().provider->getTimer();
  const auto now = timer.now();
  auto& since = unknown ? unknownSince_ : awaySince_;
  const uint64_t limitMs = unknown ? kHomeUnknownMs : d_.config().linkLostAfterMs;
  uint64_t waitedMs = 0;
  KJ_IF_MAYBE(s, since) {
    waitedMs = (now - *s) / kj::MILLISECONDS;
    if (waitedMs >= limitMs) return nullptr;
  } else {
    since = now;
    d_.log(unknown ? kj::str("job ", jobId_, ": its home shadowd does not know it (yet: restarted, its deputy not "
                             "registered again); its calls wait for it, up to ", limitMs / 1000, " s")
                   : kj::str("job ", jobId_, ": its home cannot be reached before its first link (",
                             oneLine(e.getDescription()), "); its calls wait for it, up to ", limitMs / 1000, " s"));
  }
  deputy_ = nullptr;
  // Away for more than a moment: a login try a second is enough.
  const uint64_t pauseMs = !unknown && waitedMs >= 2000 ? kHomeAwayPauseMs : kHomeUnknownPauseMs;
  return timer.afterDelay(pauseMs * kj::MILLISECONDS);
}

// An answer came from home: whatever waited for it is over.
void JobCalls::reachedHome() {
  reached_ = true;
  unknownSince_ = nullptr;
  awaySince_ = nullptr;
}

kj::Promise<void> JobCalls::settled() {
  if (connections_ == 0 && idle()) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  settledWaiters_.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

// A close (or a dup3 over it) ends its fd's failed writes: the number may be
// another file's next (rsc::WriteFailures).
void JobCalls::noteClose(kj::ArrayPtr<const kj::byte> request) {
  rsc::RequestHeader h;
  memcpy(&h, request.begin(), sizeof(h));
  if (h.call == static_cast<uint32_t>(rsc::CallId::Close)) failures_.closed(h.args[0]);
  if (h.call == static_cast<uint32_t>(rsc::CallId::Dup3)) failures_.closed(h.args[1]);
}

// Sends the next writes home when it is their turn, each joined with the ones after it
// to the same fd. A write to a stream runs after every write issued before it, alone
// (the deputy runs it on a worker thread, where it may block on a full pipe). Writes
// to files run in their order but go past the waiting writes to streams issued before
// them, up to rsc::kWritesInFlight batches at once (they run on the deputy's loop in
// the order they come). A write to an fd whose write failed before it is not sent
// (rsc::WriteFailures): it waits for the file batches on their way, which may fail
// too, and then fails unsent (or, the program told, goes again).
void JobCalls::pump() {
  while (sendNext(streams_) || sendNext(files_)) {
  }
}

// Sends (or fails unsent) the first write of `lane` and those joined to it, if it is
// their turn: whether it did.
bool JobCalls::sendNext(std::multimap<uint64_t, Write>& lane) {
  // Batches whose send failed go again first: one sent before them, on the new link,
  // would run at home before them.
  if (lane.empty() || resendScheduled_) return false;
  auto first = lane.begin();
  const rsc::PipelinedWrite& w = first->second.w;
  if (w.order > arrived_ + 1) return false;  // one before it has not come
  if (w.file ? inFlight_.size() >= rsc::kWritesInFlight || (!inFlight_.empty() && failures_.has(w.fd))
             : streamInFlight_ != nullptr || ranUpTo(false) + 1 < w.order) {
    return false;
  }
  auto& numbers = w.file ? fileWrites_ : streamWrites_;
  if (const int32_t error = failures_.before(w); error != 0) {
    first->second.origin->sendReply(rsc::deferredFailure(w, error));
    numbers.erase(numbers.find(first->first));
    queuedBytes_ -= queueCost(first->second.request.size());
    lane.erase(first);
    wakeWaiters();
    return true;
  }
  kj::Vector<Write> parts;
  uint64_t bytes = 0, cost = 0;
  for (auto it = lane.begin(); it != lane.end(); it = lane.erase(it)) {
    const rsc::PipelinedWrite& next = it->second.w;
    if (!parts.empty() && (next.order != parts.back().w.order + 1 || !rsc::joinsWith(parts.back().w, next) ||
                           bytes + next.count > rsc::kMaxIo)) {
      break;
    }
    bytes += next.count;
    cost += queueCost(it->second.request.size());
    parts.add(kj::mv(it->second));
  }
  auto batch = kj::heap<Batch>();
  batch->last = parts.back().w.order;
  batch->cost = cost;
  batch->fd = parts[0].w.fd;
  batch->file = parts[0].w.file;
  if (parts.size() == 1) {
    batch->request = kj::mv(parts[0].request);
  } else {
    kj::Vector<kj::ArrayPtr<const kj::byte>> views;
    for (auto& p : parts) views.add(p.request);
    batch->request = rsc::joinWrites(views);
  }
  for (auto& p : parts) {
    batch->orders.add(p.w.order);
    bool seen = false;
    for (auto& o : batch->origins) {
      if (o.first.get() == p.origin.get()) {
        o.second = p.w;
        seen = true;
      }
    }
    if (!seen) batch->origins.add(std::make_pair(kj::mv(p.origin), p.w));
  }
  Batch& sent = *batch;
  if (sent.file) {
    inFlight_.push_back(kj::mv(batch));
  } else {
    streamInFlight_ = kj::mv(batch);
  }
  sendBatch(sent);
  return true;
}

void JobCalls::sendBatch(Batch& b) {
  b.again = false;
  kj::Promise<int32_t> answered = lost_ ? kj::Promise<int32_t>(EIO) : sendWrite(b);
  d_.tasks().add(answered.then([this, &b](int32_t error) {
                           if (error < 0) return;  // it goes again (resendAfter)
                           b.error = error;
                           retire();
                         }).attach(kj::addRef(*this)));
}

// One batch of pipelined writes: 0 when it ran, else the errno of its failure; -1 when
// it did not reach home and goes again.
kj::Promise<int32_t> JobCalls::sendWrite(Batch& b) {
  const uint64_t generation = generation_;
  // The bytes are not copied into the message: it points at the batch's, which live
  // until its answer comes (a MiB copied and its segment zeroed less per MiB written).
  auto req = deputy().callRequest(capnp::MessageSize{8, 1});
  auto params = static_cast<rpc::Deputy::CallParams::Builder>(req);
  req.adoptRequest(capnp::Orphanage::getForMessageContaining(params).referenceExternalData(b.request));
  return req.send().then(
      [this](capnp::Response<rpc::Deputy::CallResults> r) -> int32_t {
        auto reply = r.getReply();
        int32_t error = 0;  // it worked
        if (reply.size() >= sizeof(rsc::ReplyHeader)) {
          rsc::ReplyHeader h;
          memcpy(&h, reply.begin(), sizeof(h));
          error = h.error > 0 ? h.error : EIO;
        }
        hold(kj::mv(r));
        reachedHome();
        return error;
      },
      [this, &b, generation](kj::Exception&& e) -> int32_t {
        if (resumes(e)) {
          startRelink();
          b.again = true;
          resendAfter(nextLink(generation));
          return -1;
        }
        KJ_IF_MAYBE(pause, homeNotReady(e)) {
          b.again = true;
          resendAfter(kj::mv(*pause));
          return -1;
        }
        deputy_ = nullptr;
        d_.log(kj::str("job ", jobId_, ": a write home failed: ", e.getDescription()));
        return EIO;
      });
}

// The batches whose send failed go again once `when` resolves, in the order they were
// first sent: the deputy runs them in the order they come. (A broken link fails all
// its calls in one go, so they are all marked by then.)
void JobCalls::resendAfter(kj::Promise<void> when) {
  if (resendScheduled_) return;
  resendScheduled_ = true;
  d_.tasks().add(when.then([this]() {
                       resendScheduled_ = false;
                       KJ_IF_MAYBE(b, streamInFlight_) {
                         if ((*b)->again) sendBatch(**b);
                       }
                       for (auto& b : inFlight_) {
                         if (b->again) sendBatch(*b);
                       }
                       pump();  // what waited for them
                     }).attach(kj::addRef(*this)));
}

// The answered batches are done with, the files' in order: a failure is told to the
// threads whose writes were in it, and its writes have run.
void JobCalls::retire() {
  auto done = [this](kj::Own<Batch> b, int32_t error) {
    if (error != 0) {
      failures_.failed(b->fd, error);
      for (auto& o : b->origins) o.first->sendReply(rsc::deferredFailure(o.second, error));
    }
    auto& numbers = b->file ? fileWrites_ : streamWrites_;
    for (uint64_t n : b->orders) numbers.erase(numbers.find(n));
    queuedBytes_ -= b->cost;
  };
  KJ_IF_MAYBE(b, streamInFlight_) {
    KJ_IF_MAYBE(error, (*b)->error) {
      const int32_t e = *error;
      auto batch = kj::mv(*b);
      streamInFlight_ = nullptr;
      done(kj::mv(batch), e);
    }
  }
  while (!inFlight_.empty()) {
    KJ_IF_MAYBE(error, inFlight_.front()->error) {
      const int32_t e = *error;
      auto b = kj::mv(inFlight_.front());
      inFlight_.pop_front();
      done(kj::mv(b), e);
    } else {
      break;
    }
  }
  wakeWaiters();
  pump();
  wakeWaiters();  // pump may have had nothing to send
}

// Cap'n Proto sends the deputy a Finish message for each answer as it is dropped: one
// message, and one more wake-up of the deputy, per call (the profile of a forwarded
// 64-byte write showed it: two wake-ups of the deputy per call). Answers are held
// and let go 32 at a time (or once they hold 1 MiB), which the deputy takes in one.
void JobCalls::hold(capnp::Response<rpc::Deputy::CallResults> r) {
  heldBytes_ += r.getReply().size();
  finished_.add(kj::mv(r));
  if (finished_.size() >= kHeldAnswers || heldBytes_ >= kHeldAnswerBytes) {
    finished_.clear();
    heldBytes_ = 0;
  }
}

void JobCalls::wakeWaiters() {
  for (const bool filesOnly : {false, true}) {
    auto& waiters = filesOnly ? fileWaiters_ : ranWaiters_;
    const uint64_t ran = ranUpTo(filesOnly);
    while (!waiters.empty() && waiters.begin()->first <= ran) {
      waiters.begin()->second->fulfill();
      waiters.erase(waiters.begin());
    }
  }
  if (queuedBytes_ <= kMaxQueuedBytes) {
    for (auto& w : roomWaiters_) w->fulfill();
    roomWaiters_.clear();
  }
  if (connections_ == 0 && idle()) {
    for (auto& w : settledWaiters_) w->fulfill();
    settledWaiters_.clear();
  }
}

// Something waits for a write that has not arrived. Normally it is on its way; if it
// is still missing after kGapTimeoutMs, it is given up (and said in the log).
void JobCalls::watchForGap() {
  if (gapWatched_) return;
  gapWatched_ = true;
  const uint64_t stuckAt = arrived_;
  auto timer = d_.io().provider->getTimer().afterDelay(kGapTimeoutMs * kj::MILLISECONDS);
  d_.tasks().add(timer.then([this, stuckAt]() {
                        gapWatched_ = false;
                        // The last number waited for that has not come.
                        uint64_t wanted = early_.empty() ? 0 : *early_.begin() - 1;
                        for (auto* w : {&ranWaiters_, &fileWaiters_}) {
                          if (!w->empty()) wanted = kj::max(wanted, w->rbegin()->first);
                        }
                        if (wanted <= arrived_) return;
                        if (arrived_ != stuckAt) {  // moving: look again later
                          watchForGap();
                          return;
                        }
                        d_.log(kj::str("job ", jobId_, ": pipelined writes ", arrived_ + 1, "..", wanted,
                                       " never reached this host; going on without them"));
                        arrived(wanted);
                        pump();
                        wakeWaiters();
                      }).attach(kj::addRef(*this)));
}

}  // namespace mig::shadow
