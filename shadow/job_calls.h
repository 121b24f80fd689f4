// The forwarded calls of one job that runs on this host, on their way home to its
// deputy. The job's threads each have a relay connection (call_relay.cc); this is
// what they share: the link to the deputy, and the order of the job's pipelined
// writes (rsc/wire.h: kNoReply). Writes are numbered by the shim across all threads;
// they run at home one after the other in that order whichever connection brought
// them, consecutive writes to one fd travel as one call, and a call that waits for
// its reply runs only after the writes issued before it. So `printf` in a loop costs
// no round trip, and output stays in the order the job wrote it. The writes to files
// (rsc::kFileWrite) are a lane of their own: they go past the writes to streams issued
// before them that wait (a full pipe at home must not hold up a log file), and their
// batches may be several at the deputy at once (rsc::kWritesInFlight: they run there
// in the order they come); a stream's write runs after every write issued before it,
// alone. After a write that failed, the ones to its fd queued behind it fail unsent
// (rsc::WriteFailures; those already on their way fail alike at the deputy).
//
// Over a direct link (direct_link.h) a call whose link breaks before its answer comes
// is not failed: the link is resumed (same address, same key, a short bounded
// backoff) and the same request goes again on it; the deputy answers a request it ran
// already from that run (deputy/answered.h), so nothing runs twice and nothing is
// lost. The readiness watches are made again on the resumed link. A link broken for
// longer than home's limit is given up: the job is lost, killed here, its calls
// answered EIO. Without a direct link (--no-direct-link) the calls go through home's
// shadowd on a cluster login of their own, watched for liveness the same way, and a
// broken one is resumed the same way: a new login, Node.deputy again, the same
// requests again. Home watches that login and gives the job up past the same limit
// (Node.deputy's lostAfterMs; shadow/relayed_link.cc).
#pragma once

#include "rsc/write_batch.h"
#include "shadow/direct_link.h"
#include "shadow/mig.capnp.h"
#include "shadow/peer_login.h"
#include "shadow/pushed_reads.h"

#include <kj/async.h>
#include <kj/async-io.h>
#include <kj/refcount.h>

#include <deque>
#include <map>
#include <set>

namespace mig::shadow {

class Daemon;
class StandInEnd;  // job_calls.cc

// Where the answers to a thread's calls go: its relay connection.
class CallOrigin : public kj::Refcounted {
 public:
  virtual ~CallOrigin() = default;
  virtual void sendReply(kj::Array<kj::byte> reply) = 0;
};

class JobCalls : public kj::Refcounted {
 public:
  JobCalls(Daemon& d, uint64_t jobId, kj::StringPtr home, kj::ArrayPtr<const kj::byte> token);

  // A connection of the job said hello; `order`: the writes issued before it. The
  // first hello of the job's own process after the restore (made before any thread
  // runs; `numbers`: not a process born away from home, whose order says nothing of
  // the job's writes) sets where the numbering goes on.
  void connected(uint64_t order, bool numbers);
  void disconnected();

  // A pipelined write (`w`: what rsc::parsePipelinedWrite found in `request`); a
  // failure goes back to `origin` as a deferred failure.
  void write(const rsc::PipelinedWrite& w, kj::Array<kj::byte> request, kj::Own<CallOrigin> origin);

  // Resolves when few enough written bytes wait that a connection may read more:
  // a job that writes faster than home takes it is slowed down, not buffered here.
  kj::Promise<void> room();

  // Resolves once every pipelined write numbered up to `order` (`filesOnly`: every
  // such write to a file, rsc::kFileWrite) has run at home.
  kj::Promise<void> ranUpTo(uint64_t order, bool filesOnly = false);

  // A call that waits for its reply: a read of a home stream served from bytes pushed
  // ahead (pushed_reads.h), or sent home (callHome).
  kj::Promise<kj::Array<kj::byte>> call(kj::Array<kj::byte> request);

  // How long its link may stay broken before the job is lost (home's word), or 0.
  uint64_t lostAfterMs() const {
    KJ_IF_MAYBE(r, resume_) { return r->lostAfterMs; }
    return 0;
  }

  // The job's thread `thread` asks that its call `seq`, waiting at home, end now (a
  // signal its program handles came: rsc::kCancel). Its answer still comes through
  // `call`; a cancel that cannot reach home is dropped (the call waits on).
  void cancel(uint32_t thread, uint64_t seq);

  // A call sent home: it runs after the writes issued before it. Home unreachable
  // gives an EIO reply.
  kj::Promise<kj::Array<kj::byte>> callHome(kj::Array<kj::byte> request);

  // The checkpoint's barrier, beside ranUpTo: resolves once the reads served from
  // pushed bytes are taken at home (pushed_reads.h).
  kj::Promise<void> settleReads();

  // Resolves once the job's connections have all closed and every write has run:
  // only then may its end be told home (the deputy exits, its parent reads the output).
  kj::Promise<void> settled();

  // Serves a readiness stand-in of the job for its home fd `fd`
  // (shim/forward/readiness_stand_in.h): once the job runs here (its first call
  // connection; a restore that fails must not have told home anything), the deputy
  // watches the fd and each time it says so a token goes into `stream`. Resolves when
  // the job has closed every copy of the stand-in.
  kj::Promise<void> serveStandIn(int32_t fd, kj::Own<kj::AsyncIoStream> stream);

  // Node.setupCheck: once the job's deputy is reached and every stand-in served so far
  // is watched at home or failed, what failed (one line; empty: nothing).
  kj::Promise<kj::String> setupProblems();

  // Tells the deputy the job ended (wait status) over the direct link, for when its
  // home shadowd cannot be told (it was restarted or is gone); fails without one.
  kj::Promise<void> tellEndedDirectly(int32_t status);

  // Tells home the job was stopped here by `signal` (SIGCONT: continued), through the
  // JobStops home gave with the deputy (rpc::JobStops), so the deputy follows.
  kj::Promise<void> tellStop(int signal);

 private:
  struct Write {
    rsc::PipelinedWrite w;
    kj::Array<kj::byte> request;
    kj::Own<CallOrigin> origin;
  };

  friend class PushedReads;  // asks the deputy over this link, and resends as calls do

  rpc::Deputy::Client deputy();
  kj::Promise<kj::Array<kj::byte>> send(kj::Array<kj::byte> request);
  // A batch of pipelined writes sent home, kept until its answer comes: after a broken
  // link it goes again, in order with the others (the deputy knows it by its last
  // write's order, thread and seq, deputy/answered.h).
  struct Batch {
    kj::Array<kj::byte> request;
    // Who hears of a failure: each thread whose bytes were in it, about its own last write.
    kj::Vector<std::pair<kj::Own<CallOrigin>, rsc::PipelinedWrite>> origins;
    uint64_t last;             // its last write's number
    kj::Vector<uint64_t> orders;  // the numbers of its writes
    uint64_t cost;             // what it counts in queuedBytes_
    int64_t fd;
    bool file;                 // of writes to a file: others may go beside it
    bool again = false;        // its send failed: it goes again (resendAfter)
    kj::Maybe<int32_t> error;  // answered: 0, or the errno it failed with
  };
  bool sendNext(std::multimap<uint64_t, Write>& lane);
  void sendBatch(Batch& b);
  kj::Promise<int32_t> sendWrite(Batch& b);
  void resendAfter(kj::Promise<void> when);
  void retire();
  kj::Promise<void> watchAtHome(int32_t fd, kj::Own<StandInEnd> end);
  // The resumable link home, direct or through home's shadowd: install a (re)made one;
  // notice a break; make it again.
  struct Relayed {
    kj::Own<PeerLink> login;
    rpc::Deputy::Client deputy;
    uint64_t lostAfterMs;  // home's limit for the job (0: an older home's, not said)
    rpc::JobStops::Client stops;
  };
  kj::Promise<Relayed> relayedLink(uint64_t timeoutMs);
  void installDirect(kj::Own<DirectLink> link);
  void installRelayed(Relayed link);
  void installed(rpc::Deputy::Client dep, kj::Promise<void> disconnected);
  void dropLinks();
  kj::StringPtr linkName() const;
  void broken(uint64_t generation);
  bool resumes(const kj::Exception& e) const;
  void startRelink();
  kj::Promise<void> relink(uint64_t backoffMs);
  void giveUp(uint64_t downMs);
  kj::Promise<void> nextLink(uint64_t generation);  // resolves once a link after it is up, or lost
  void hold(capnp::Response<rpc::Deputy::CallResults> r);
  kj::Maybe<kj::Promise<void>> homeNotReady(const kj::Exception& e);
  void reachedHome();
  kj::Maybe<kj::TimePoint> unknownSince_;  // home first said it does not know the job
  kj::Maybe<kj::TimePoint> awaySince_;     // home first failed to answer, before any answer
  bool reached_ = false;                   // home answered a call once
  void pump();
  void noteClose(kj::ArrayPtr<const kj::byte> request);
  void wakeWaiters();
  void watchForGap();
  kj::Promise<void> started();

  Daemon& d_;
  uint64_t jobId_;
  kj::String home_;
  kj::Array<kj::byte> token_;
  kj::Maybe<rpc::Deputy::Client> deputy_;  // direct, or through the home shadowd; dropped when it breaks
  kj::Maybe<rpc::JobStops::Client> stops_;  // home's, given with the deputy (tellStop)
  kj::Maybe<kj::Own<DirectLink>> direct_;  // the direct link home, once up (direct_link.h)
  kj::Maybe<kj::Own<PeerLink>> relayed_;   // or the login to home's shadowd the calls go through
  // Where to resume it, once it was up and home's deputy resumes links (lostAfterMs > 0).
  struct Resume {
    kj::String address;
    kj::Array<kj::byte> key;  // the direct link's (none: relayed)
    LinkMode mode;
    uint64_t lostAfterMs;
    bool relayed;
  };
  kj::Maybe<Resume> resume_;
  uint64_t generation_ = 0;   // links made so far
  bool relinking_ = false;
  bool lost_ = false;         // broken past the limit: given up
  kj::TimePoint downSince_ = kj::origin<kj::TimePoint>();
  kj::Promise<void> linkWatch_ = nullptr;  // the current link's end
  kj::Promise<void> relinkLoop_ = nullptr;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> linkWaiters_;
  // Answers read, held so that their Finish messages go to the deputy together (hold).
  kj::Vector<capnp::Response<rpc::Deputy::CallResults>> finished_;
  uint64_t heldBytes_ = 0;

  // Pipelined writes not sent yet, by order number, to files and to streams (kept even
  // if a number comes twice: no byte is dropped).
  std::multimap<uint64_t, Write> files_, streams_;
  uint64_t arrived_ = 0;               // every write up to this number has come
  std::set<uint64_t> early_;           // numbers come past one that has not
  std::multiset<uint64_t> fileWrites_, streamWrites_;  // the numbers come and not run yet
  uint64_t ranUpTo(bool filesOnly) const;  // every such write up to it has run
  void arrived(uint64_t order);
  bool idle() const;
  std::deque<kj::Own<Batch>> inFlight_;  // file batches sent and not answered yet (or
                                         // answered before one sent ahead of it), in order
  kj::Maybe<kj::Own<Batch>> streamInFlight_;  // a stream's batch sent, not answered yet
  bool resendScheduled_ = false;
  rsc::WriteFailures failures_;        // fds whose writes stop after a failed one
  uint64_t queuedBytes_ = 0;
  bool started_ = false;
  int watchesPending_ = 0;                       // stand-ins whose watch is not settled
  kj::Vector<kj::String> watchProblems_;         // the ones that failed, one line each
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> watchWaiters_;
  void watchSettled(StandInEnd& end);
  int connections_ = 0;
  std::multimap<uint64_t, kj::Own<kj::PromiseFulfiller<void>>> ranWaiters_, fileWaiters_;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> roomWaiters_;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> settledWaiters_;
  bool gapWatched_ = false;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> startWaiters_;
  kj::Own<PushedReads> pushed_;  // last: it calls back into the above
};

}  // namespace mig::shadow
