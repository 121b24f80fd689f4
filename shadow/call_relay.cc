// The call relay: the shims of jobs that migrated in connect here (one connection per
// thread that forwards), prove which job they are with its token, and send their
// location-dependent system calls (rsc/wire.h) which go home as Deputy.call RPCs.
// The first connection of a job is also how shadowd learns that a restore worked.
#include "rsc/wire.h"
#include "shadow/error.h"
#include "shadow/services.h"
#include "shim/forward/forward_config.h"

#include <kj/debug.h>

#include <cerrno>
#include <cstring>

namespace mig::shadow {
namespace {

rpc::Deputy::Client deputyFor(Daemon& d, HostedJob& job) {
  KJ_IF_MAYBE(dep, job.deputy) { return *dep; }
  // Promise pipelining: calls may be sent before the login to home completes.
  rpc::Node::Client home(d.peer(job.home));
  auto req = home.deputyRequest();
  req.setJobId(job.id);
  req.setToken(job.token);
  req.setLocation(d.address());
  rpc::Deputy::Client deputy = req.send().getDeputy();
  job.deputy = deputy;
  return deputy;
}

class RelayConnection {
 public:
  RelayConnection(Daemon& d, kj::Own<kj::AsyncIoStream> stream) : d_(d), stream_(kj::mv(stream)) {}

  kj::Promise<void> run() {
    return stream_->read(&hello_, sizeof(hello_)).then([this]() -> kj::Promise<void> {
      if (hello_.magic != forward::kHelloMagic || hello_.length != sizeof(hello_)) {
        fail(kj::str("call relay: a connection without a valid hello"));
      }
      HostedJob* job = d_.hostedJob(hello_.jobId, kj::arrayPtr(hello_.token, sizeof(hello_.token)));
      if (job == nullptr) fail(kj::str("call relay: unknown job or wrong token"));
      jobId_ = job->id;
      if (!job->running) {
        job->running = true;
        if (job->onRunning) job->onRunning->fulfill();
      }
      return loop();
    });
  }

 private:
  kj::Promise<void> loop() {
    return stream_->tryRead(&header_, sizeof(header_), sizeof(header_)).then([this](size_t n) -> kj::Promise<void> {
      if (n == 0) return kj::READY_NOW;  // the thread or process went away
      if (header_.magic != rsc::kRequestMagic || header_.length < sizeof(header_) ||
          header_.length > rsc::kMaxMessage) {
        fail(kj::str("call relay: malformed request"));
      }
      request_ = kj::heapArray<kj::byte>(header_.length);
      memcpy(request_.begin(), &header_, sizeof(header_));
      return stream_->read(request_.begin() + sizeof(header_), header_.length - sizeof(header_))
          .then([this]() { return forward(); })
          .then([this]() { return loop(); });
    });
  }

  kj::Promise<void> forward() {
    HostedJob* job = nullptr;
    KJ_IF_MAYBE(j, d_.hostedJobs().find(jobId_)) { job = j->get(); }
    require(job != nullptr, "call relay: the job is gone");
    auto req = deputyFor(d_, *job).callRequest();
    req.setRequest(request_);
    uint64_t id = jobId_;
    return req.send()
        .then([this](capnp::Response<rpc::Deputy::CallResults> r) -> kj::Promise<void> {
          auto reply = r.getReply();
          if (reply.size() == 0) return kj::READY_NOW;  // a pipelined write that worked
          auto copy = kj::heapArray<kj::byte>(reply);
          auto write = stream_->write(copy.begin(), copy.size());
          return write.attach(kj::mv(copy));
        },
        [this, id](kj::Exception&& e) -> kj::Promise<void> {
          // Home unreachable: answer EIO, and connect afresh for the next call.
          KJ_IF_MAYBE(j, d_.hostedJobs().find(id)) { (*j)->deputy = nullptr; }
          d_.log(kj::str("job ", id, ": a call home failed: ", e.getDescription()));
          rsc::ReplyHeader reply{};
          reply.magic = rsc::kReplyMagic;
          reply.length = sizeof(reply);
          reply.seq = header_.seq;
          reply.result = -1;
          reply.error = EIO;
          auto copy = kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(&reply), sizeof(reply));
          auto write = stream_->write(copy.begin(), copy.size());
          return write.attach(kj::mv(copy));
        });
  }

  Daemon& d_;
  kj::Own<kj::AsyncIoStream> stream_;
  forward::Hello hello_{};
  rsc::RequestHeader header_{};
  kj::Array<kj::byte> request_;
  uint64_t jobId_ = 0;
};

}  // namespace

kj::Promise<void> serveCallRelay(Daemon& d, kj::ConnectionReceiver& listener) {
  return listener.accept().then([&d, &listener](kj::Own<kj::AsyncIoStream> stream) {
    auto conn = kj::heap<RelayConnection>(d, kj::mv(stream));
    auto run = conn->run();
    d.tasks().add(run.attach(kj::mv(conn)));
    return serveCallRelay(d, listener);
  });
}

}  // namespace mig::shadow
