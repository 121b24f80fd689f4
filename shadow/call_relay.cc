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

#include <kj/async-unix.h>
#include <kj/debug.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

// A thread's call connection, watched for input only. kj's own stream watches its fd
// for writability too (edge-triggered), and a Unix socket is made writable again
// each time the shim takes a reply from it: a wake-up of the link process per call
// that does nothing (strace: an EPOLLOUT-only epoll_wait for 293 of 300 calls).
// Writability is watched here only while a reply waits for room, on a copy of the fd.
class CallStream final : public kj::AsyncIoStream {
 public:
  CallStream(kj::UnixEventPort& port, kj::AutoCloseFd fd)
      : port_(port), fd_(kj::mv(fd)), readable_(port, fd_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    return readMore(static_cast<kj::byte*>(buffer), minBytes, maxBytes, 0);
  }

  kj::Promise<void> write(const void* buffer, size_t size) override {
    auto p = static_cast<const kj::byte*>(buffer);
    while (size > 0) {
      // MSG_NOSIGNAL: a shim that went away is a failed write, not SIGPIPE.
      ssize_t n = ::send(fd_.get(), p, size, MSG_NOSIGNAL);
      if (n >= 0) {
        p += n;
        size -= static_cast<size_t>(n);
      } else if (errno == EAGAIN) {
        return whenWritable().then([this, p, size]() { return write(p, size); });
      } else if (errno != EINTR) {
        return KJ_EXCEPTION(DISCONNECTED, "call relay: reply not sent", strerror(errno));
      }
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    if (pieces.size() == 0) return kj::READY_NOW;
    return write(pieces[0].begin(), pieces[0].size()).then([this, pieces]() { return write(pieces.slice(1, pieces.size())); });
  }

  // Resolves once the shim has closed its end. Asked only while a call of this
  // connection runs, when the shim sends nothing but, if a signal its program handles
  // comes, a cancel of that call (rsc::kCancel): each is taken from the socket as it
  // comes and given to `cancel`.
  kj::Promise<void> whileCallRuns(kj::Function<void(const rsc::RequestHeader&)>& cancel) {
    rsc::RequestHeader h;
    const ssize_t n = ::recv(fd_.get(), &h, sizeof(h), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return kj::READY_NOW;
    if (n == sizeof(h) && rsc::isCancel(h)) {
      ::recv(fd_.get(), &h, sizeof(h), MSG_DONTWAIT);  // what was peeked: no more
      cancel(h);
      return whileCallRuns(cancel);
    }
    if (n == sizeof(h)) return kj::NEVER_DONE;  // not the shim's way: its next request waits its turn
    return readable_.whenBecomesReadable().then([this, &cancel]() { return whileCallRuns(cancel); });
  }
  kj::Promise<void> whenWriteDisconnected() override { return kj::NEVER_DONE; }  // whileCallRuns tells
  void shutdownWrite() override { ::shutdown(fd_.get(), SHUT_WR); }
  kj::Maybe<int> getFd() const override { return fd_.get(); }

 private:
  kj::Promise<size_t> readMore(kj::byte* out, size_t minBytes, size_t maxBytes, size_t done) {
    while (done < minBytes) {
      ssize_t n = ::read(fd_.get(), out + done, maxBytes - done);
      if (n > 0) {
        done += static_cast<size_t>(n);
      } else if (n == 0) {
        return done;  // the other end closed
      } else if (errno == EAGAIN) {
        return readable_.whenBecomesReadable().then(
            [this, out, minBytes, maxBytes, done]() { return readMore(out, minBytes, maxBytes, done); });
      } else if (errno != EINTR) {
        return KJ_EXCEPTION(DISCONNECTED, "call relay: read failed", strerror(errno));
      }
    }
    return done;
  }

  // Resolves once the socket has room: an observer of a copy of the fd, made for this
  // wait alone (epoll reports a socket that has room at once when it is added).
  kj::Promise<void> whenWritable() {
    struct Watch {
      Watch(kj::UnixEventPort& port, kj::AutoCloseFd f)
          : fd(kj::mv(f)), observer(port, fd.get(), kj::UnixEventPort::FdObserver::OBSERVE_WRITE) {}
      kj::AutoCloseFd fd;
      kj::UnixEventPort::FdObserver observer;
    };
    int copy = fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0);
    if (copy < 0) return KJ_EXCEPTION(FAILED, "call relay: no fd left to wait for room", strerror(errno));
    auto watch = kj::heap<Watch>(port_, kj::AutoCloseFd(copy));
    auto room = watch->observer.whenBecomesWritable();
    return room.attach(kj::mv(watch));
  }

  kj::UnixEventPort& port_;
  kj::AutoCloseFd fd_;
  kj::UnixEventPort::FdObserver readable_;
};

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
      const bool standIn = hello_.kind == forward::kReadinessStandIn;
      if (!standIn && hello_.kind != forward::kCallConnection && hello_.kind != forward::kBornAwayCalls) {
        fail(kj::str("call relay: a connection of an unknown kind"));
      }
      KJ_IF_MAYBE(fd, stream_->getFd()) {
        // kj's stream gives up the fd (and its watch) for a copy watched for input only.
        // A stand-in too: the shim takes its tokens before each read of the fd, and
        // each take woke this process for the room it made (an EPOLLOUT-only wake-up
        // for 142 of 400 round trips in network_relay_bench.sh's MIG_BENCH_STRACE).
        const int own = fcntl(*fd, F_DUPFD_CLOEXEC, 0);
        if (own >= 0) {
          auto calls = kj::heap<CallStream>(d_.eventPort(), kj::AutoCloseFd(own));
          callStream_ = calls.get();
          stream_ = kj::mv(calls);
        }
      }
      if (standIn) return job->calls->serveStandIn(hello_.fd, kj::mv(stream_)).attach(kj::addRef(*job->calls));
      job->calls->connected(hello_.order, hello_.kind == forward::kCallConnection);
      calls_ = kj::addRef(*job->calls);
      if (!job->running) {
        job->running = true;
        if (job->onRunning) job->onRunning->fulfill();
      }
      return loop();
    });
  }

  // Replies and deferred failures go out one after the other, in the order made. One
  // with nothing ahead of it is written at once (kj tries the system call right away),
  // not a turn of the event loop later, after this connection's next read.
  void sendReply(kj::Array<kj::byte> reply) override {
    auto write = [this](kj::Array<kj::byte> reply) {
      auto written = stream_->write(reply.begin(), reply.size()).attach(kj::mv(reply));  // the bytes live until written
      return written.then([this]() { --unsent_; }, [this](kj::Exception&&) { --unsent_; });
    };
    if (++unsent_ == 1) {
      sending_ = write(kj::mv(reply)).eagerlyEvaluate(nullptr);
      return;
    }
    sending_ = sending_.then([write, reply = kj::mv(reply)]() mutable { return write(kj::mv(reply)); })
                   .eagerlyEvaluate(nullptr);
  }

 private:
  JobCalls& calls() { return *KJ_ASSERT_NONNULL(calls_); }

  // Requests are read through inBuf_: one read takes a small request whole (not its
  // header, then its body), and a run of pipelined writes many at a time. A request
  // bigger than what is buffered is read on straight into its own array.
  kj::Promise<void> loop() {
    if (inEnd_ - inBegin_ >= sizeof(header_)) return next();
    if (inBegin_ > 0) {
      memmove(inBuf_.begin(), inBuf_.begin() + inBegin_, inEnd_ - inBegin_);
      inEnd_ -= inBegin_;
      inBegin_ = 0;
    }
    const size_t need = sizeof(header_) - inEnd_;
    return stream_->tryRead(inBuf_.begin() + inEnd_, need, inBuf_.size() - inEnd_).then([this, need](size_t n) -> kj::Promise<void> {
      inEnd_ += n;
      if (n < need) return kj::READY_NOW;  // the thread or process went away
      return next();
    });
  }

  kj::Promise<void> next() {
    memcpy(&header_, inBuf_.begin() + inBegin_, sizeof(header_));
    if (header_.magic != rsc::kRequestMagic || header_.length < sizeof(header_) ||
        header_.length > rsc::kMaxMessage) {
      fail(kj::str("call relay: malformed request"));
    }
    auto request = kj::heapArray<kj::byte>(header_.length);
    const size_t buffered = kj::min(inEnd_ - inBegin_, size_t{header_.length});
    memcpy(request.begin(), inBuf_.begin() + inBegin_, buffered);
    inBegin_ += buffered;
    if (inBegin_ == inEnd_) inBegin_ = inEnd_ = 0;
    if (buffered == header_.length) return handle(kj::mv(request)).then([this]() { return loop(); });
    auto body = stream_->read(request.begin() + buffered, header_.length - buffered);
    return body.then([this, request = kj::mv(request)]() mutable { return handle(kj::mv(request)); })
        .then([this]() { return loop(); });
  }

  kj::Promise<void> handle(kj::Array<kj::byte> request) {
    // A cancel that crossed its call's answer: nothing runs to be cancelled.
    if (header_.flags & rsc::kCancel) return kj::READY_NOW;
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
      return calls().ranUpTo(header_.order).then([this]() { return calls().settleReads(); }).then([this, seq]() {
        rsc::ReplyHeader done{};
        done.magic = rsc::kReplyMagic;
        done.length = sizeof(done);
        done.seq = seq;
        sendReply(kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(&done), sizeof(done)));
      });
    }
    // A thread that goes away while its call waits at home (the job ended here, killed
    // in a read of a home pipe; or its connection closed for a checkpoint) is not
    // waited for: its connection ends now, so the job's end can be told home. A call
    // sent again from where the thread resumes is answered from the deputy's run.
    return calls().call(kj::mv(request)).then([this](kj::Array<kj::byte> reply) {
      d_.metrics().forwardedBytesIn += reply.size();
      if (reply.size() > 0) sendReply(kj::mv(reply));
    }).exclusiveJoin(whileCallRuns());
  }

  // While a call runs: the shim's cancels of it go home (Deputy.cancel), and its
  // connection's end ends the wait. A cancel read ahead with the call is in inBuf_.
  kj::Promise<void> whileCallRuns() {
    while (inEnd_ - inBegin_ >= sizeof(rsc::RequestHeader)) {
      rsc::RequestHeader h;
      memcpy(&h, inBuf_.begin() + inBegin_, sizeof(h));
      if (!rsc::isCancel(h)) break;
      cancel_(h);
      inBegin_ += sizeof(h);
    }
    if (callStream_ == nullptr) return stream_->whenWriteDisconnected();
    return callStream_->whileCallRuns(cancel_);
  }

  Daemon& d_;
  kj::Own<kj::AsyncIoStream> stream_;
  CallStream* callStream_ = nullptr;  // stream_, when it is one (the usual case)
  kj::Function<void(const rsc::RequestHeader&)> cancel_ = [this](const rsc::RequestHeader& h) {
    calls().cancel(h.thread, h.seq);
  };
  kj::Maybe<kj::Own<JobCalls>> calls_;
  forward::Hello hello_{};
  rsc::RequestHeader header_{};
  kj::Array<kj::byte> inBuf_ = kj::heapArray<kj::byte>(16 * 1024);
  size_t inBegin_ = 0, inEnd_ = 0;  // the bytes of inBuf_ read and not yet taken
  kj::Promise<void> sending_ = kj::READY_NOW;
  uint64_t unsent_ = 0;  // replies given to sendReply and not yet written (or failed)
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
