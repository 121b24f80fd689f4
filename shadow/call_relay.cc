// The call relay: the shims of jobs that migrated in connect here (one connection per
// thread that forwards), prove which job they are with its token, and send their
// location-dependent system calls (rsc/wire.h) which go home as Deputy.call RPCs.
// The first connection of a job is also how shadowd learns that a restore worked.
// A job's readiness stand-ins (shim/forward/readiness_stand_in.h) connect here too.
// Their order, and the link home, are the job's (job_calls.h).
#include "rsc/wire.h"
#include "rsc/write_batch.h"
#include "shadow/error.h"
#include "shadow/job_calls.h"
#include "shadow/services.h"
#include "shim/forward/forward_config.h"

#include <kj/debug.h>

#include <cerrno>
#include <cstring>

namespace mig::shadow {
namespace {

class RelayConnection final : public CallOrigin {
 public:
  RelayConnection(Daemon& d, kj::Own<kj::AsyncIoStream> stream) : d_(d), stream_(kj::mv(stream)) {}
  ~RelayConnection() noexcept(false) {
    KJ_IF_MAYBE(c, calls_) { (*c)->disconnected(); }
  }

  kj::Promise<void> run() {
    return stream_->read(&hello_, sizeof(hello_)).then([this]() -> kj::Promise<void> {
      if (hello_.magic != forward::kHelloMagic || hello_.length != sizeof(hello_)) {
        fail(kj::str("call relay: a connection without a valid hello"));
      }
      HostedJob* job = d_.hostedJob(hello_.jobId, kj::arrayPtr(hello_.token, sizeof(hello_.token)));
      if (job == nullptr) fail(kj::str("call relay: unknown job or wrong token"));
      if (hello_.kind == forward::kReadinessStandIn) {
        return job->calls->serveStandIn(hello_.fd, kj::mv(stream_)).attach(kj::addRef(*job->calls));
      }
      if (hello_.kind != forward::kCallConnection) fail(kj::str("call relay: a connection of an unknown kind"));
      job->calls->connected(hello_.order);
      calls_ = kj::addRef(*job->calls);
      if (!job->running) {
        job->running = true;
        if (job->onRunning) job->onRunning->fulfill();
      }
      return loop();
    });
  }

  // Replies and deferred failures go out one after the other, in the order made.
  void sendReply(kj::Array<kj::byte> reply) override {
    sending_ = sending_
                   .then([this, reply = kj::mv(reply)]() mutable {
                     auto written = stream_->write(reply.begin(), reply.size());
                     return written.attach(kj::mv(reply));  // the bytes live until written
                   })
                   .eagerlyEvaluate([](kj::Exception&&) {});
  }

 private:
  JobCalls& calls() { return *KJ_ASSERT_NONNULL(calls_); }

  kj::Promise<void> loop() {
    return stream_->tryRead(&header_, sizeof(header_), sizeof(header_)).then([this](size_t n) -> kj::Promise<void> {
      if (n < sizeof(header_)) return kj::READY_NOW;  // the thread or process went away
      if (header_.magic != rsc::kRequestMagic || header_.length < sizeof(header_) ||
          header_.length > rsc::kMaxMessage) {
        fail(kj::str("call relay: malformed request"));
      }
      auto request = kj::heapArray<kj::byte>(header_.length);
      memcpy(request.begin(), &header_, sizeof(header_));
      auto body = stream_->read(request.begin() + sizeof(header_), header_.length - sizeof(header_));
      return body.then([this, request = kj::mv(request)]() mutable { return handle(kj::mv(request)); })
          .then([this]() { return loop(); });
    });
  }

  kj::Promise<void> handle(kj::Array<kj::byte> request) {
    auto& m = d_.metrics();
    if (!(header_.flags & rsc::kBarrier)) {
      ++m.forwardedCalls;
      m.forwardedBytesOut += request.size();
    }
    if (header_.flags & rsc::kNoReply) {
      rsc::PipelinedWrite w;
      if (!rsc::parsePipelinedWrite(request, w)) fail(kj::str("call relay: malformed pipelined write"));
      calls().write(w, kj::mv(request), kj::addRef(*this));
      return calls().room();
    }
    if (header_.flags & rsc::kBarrier) {
      const uint64_t seq = header_.seq;
      return calls().ranUpTo(header_.order).then([this, seq]() {
        rsc::ReplyHeader done{};
        done.magic = rsc::kReplyMagic;
        done.length = sizeof(done);
        done.seq = seq;
        sendReply(kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(&done), sizeof(done)));
      });
    }
    return calls().call(kj::mv(request)).then([this](kj::Array<kj::byte> reply) {
      d_.metrics().forwardedBytesIn += reply.size();
      if (reply.size() > 0) sendReply(kj::mv(reply));
    });
  }

  Daemon& d_;
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Maybe<kj::Own<JobCalls>> calls_;
  forward::Hello hello_{};
  rsc::RequestHeader header_{};
  kj::Promise<void> sending_ = kj::READY_NOW;
};

}  // namespace

kj::Promise<void> serveCallRelay(Daemon& d, kj::ConnectionReceiver& listener) {
  return listener.accept().then([&d, &listener](kj::Own<kj::AsyncIoStream> stream) {
    auto conn = kj::refcounted<RelayConnection>(d, kj::mv(stream));
    auto run = conn->run();
    d.tasks().add(run.attach(kj::mv(conn)));
    return serveCallRelay(d, listener);
  });
}

}  // namespace mig::shadow
