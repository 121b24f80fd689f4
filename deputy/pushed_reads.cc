// Peeking and taking the job's home streams for reads pushed ahead (pushed_reads.h).
#include "deputy/pushed_reads.h"

#include "deputy/log.h"
#include "deputy/own_fds.h"
#include "deputy/sole_reader.h"
#include "rsc/forward_table.h"
#include "rsc/wire.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mig::deputy {
namespace {

// Pushing asked from further than this past what is taken is out of step (no window is).
constexpr uint64_t kMaxAhead = 16u << 20;
// The pipe a pipe's bytes are copied into to be looked at: as big as a pipe may be
// made without privilege, so it holds whatever a home pipe holds.
constexpr int kScratchSize = 1 << 20;
// Up to this many bytes not yet taken, a socket's look copies them too rather than skip
// them with SO_PEEK_OFF, which costs two setsockopt calls: small messages (a request,
// then its answer) are looked at with one recv.
constexpr size_t kCopySkipped = 4096;

// Whether reads of `fd` may be pushed: a blocking stream socket that is no listener,
// or a pipe (`pipe`; a named FIFO is not, below: otherReader).
bool pushable(int fd, bool& pipe) {
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  const int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || (fl & O_NONBLOCK)) return false;
  pipe = S_ISFIFO(st.st_mode);
  if (pipe) return true;
  if (!S_ISSOCK(st.st_mode)) return false;
  int type = 0, listening = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return false;
  len = sizeof(listening);
  return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening == 0;
}

}  // namespace

// One fd's bytes on their way to the job's host: sent as they arrive while fewer than
// the window are sent and not taken, looked at through its own copy of the fd (the job
// may close its number meanwhile; the readiness watches observe copies too). Lives as
// long as the host holds its PushHandle (or the link it came on).
class PushedReads::Pusher final : public rpc::PushHandle::Server, private kj::TaskSet::ErrorHandler {
 public:
  Pusher(PushedReads& owner, kj::UnixEventPort& port, int fd, int copy, uint64_t from, uint64_t window,
         rpc::PushSink::Client sink)
      : owner_(owner), fd_(fd), copy_(copy), observer_(port, copy_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ),
        sent_(from), window_(window), sink_(kj::mv(sink)), sends_(*this) {
    unmark_.fd = copy;
    owner_.streams_[fd_].pushers.add(this);
    running_ = kj::evalLater([this]() { return run(); }).eagerlyEvaluate([this](kj::Exception&& e) {
      log(kj::str("fd ", fd_, ": pushing its reads stopped: ", e.getDescription()));
    });
  }
  ~Pusher() noexcept(false) {
    auto& all = owner_.streams_[fd_].pushers;
    for (size_t i = 0; i < all.size(); ++i) {
      if (all[i] == this) {
        all[i] = all.back();
        all.removeLast();
        break;
      }
    }
  }

  // Bytes were taken: there may be room again, or the end reached.
  void kick() {
    KJ_IF_MAYBE(f, kicked_) { (*f)->fulfill(); }
    kicked_ = nullptr;
  }

 private:
  void taskFailed(kj::Exception&&) override {}  // the link broke: the host asks again on the next

  kj::Promise<void> run() {
    auto edge = observer_.whenBecomesReadable();  // asked first: no edge falls in between
    Stream& s = owner_.streams_[fd_];
    if (sent_ < s.taken) return end(rpc::PeekEnd::OUT_OF_STEP, 0);
    const uint64_t ahead = sent_ - s.taken;
    if (ahead < window_) {
      size_t n = 0;
      int error = 0;
      switch (owner_.peekBytes(fd_, s.pipe, ahead, window_ - ahead, n, error)) {
        case Found::BYTES: {
          auto req = sink_.bytesRequest(capnp::MessageSize{n / sizeof(capnp::word) + 8, 1});
          req.setAt(sent_);
          memcpy(req.initData(n).begin(), owner_.buffer_.data(), n);
          sends_.add(req.send().ignoreResult());
          sent_ += n;
          // The look found less than it could take: the stream held no more then, and
          // what comes after is the edge asked before it (no second look, and the push
          // goes out with this turn's write). Else more may be there.
          if (n < window_ - ahead) break;
          return kj::evalLater([this]() { return run(); });
        }
        case Found::END: return end(rpc::PeekEnd::END_OF_STREAM, 0);
        case Found::FAILED: return end(rpc::PeekEnd::FAILED, error);
        case Found::NONE_YET: break;
      }
    }
    auto paf = kj::newPromiseAndFulfiller<void>();
    kicked_ = kj::mv(paf.fulfiller);
    return edge.exclusiveJoin(kj::mv(paf.promise)).then([this]() { return run(); });
  }

  kj::Promise<void> end(rpc::PeekEnd how, int error) {
    auto req = sink_.bytesRequest();
    req.setAt(sent_);
    req.setEnd(how);
    req.setError(error);
    sends_.add(req.send().ignoreResult());
    return kj::READY_NOW;
  }

  struct Unmark {
    int fd = -1;
    ~Unmark() { markOwn(fd, false); }
  };
  PushedReads& owner_;
  const int fd_;
  Unmark unmark_;  // before copy_: unmarks it after it is closed
  kj::AutoCloseFd copy_;
  kj::UnixEventPort::FdObserver observer_;
  uint64_t sent_;
  const uint64_t window_;
  rpc::PushSink::Client sink_;
  kj::TaskSet sends_;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> kicked_;
  kj::Promise<void> running_ = nullptr;
};

PushedReads::PushedReads(kj::UnixEventPort& port, kj::Function<int64_t(kj::ArrayPtr<const kj::byte>)> runRead,
                         kj::Function<kj::Promise<void>(int fd)> inputTaken)
    : port_(port), runRead_(kj::mv(runRead)), inputTaken_(kj::mv(inputTaken)), tasks_(*this) {}

PushedReads::~PushedReads() {
  for (int fd : scratch_) {
    if (fd >= 0) {
      close(fd);
      markOwn(fd, false);
    }
  }
}

kj::Promise<void> PushedReads::push(PushContext context) {
  auto p = context.getParams();
  auto results = context.getResults();
  const int fd = p.getFd();
  uint64_t from = p.getFrom();
  bool pipe = false;
  if (!pushable(fd, pipe)) {
    results.setEnd(rpc::PeekEnd::NOT_PUSHABLE);
    return kj::READY_NOW;
  }
  // Bytes another reader at home could take would be the job's too (sole_reader.h).
  if (const pid_t other = sole_.otherReader(fd); other != 0) {
    log(kj::str("reads of fd ", fd, " stay calls: ",
                other > 0 ? kj::str("process ", other, " at home may read it too") : kj::str("no sole reader's stream")));
    results.setEnd(other > 0 ? rpc::PeekEnd::SHARED : rpc::PeekEnd::NOT_PUSHABLE);
    return kj::READY_NOW;
  }
  Stream& s = streams_[fd];
  s.pipe = pipe;
  if (p.getFresh()) from = s.taken;
  results.setAt(from);
  if (from < s.taken || from - s.taken > kMaxAhead) {
    results.setEnd(rpc::PeekEnd::OUT_OF_STEP);
    return kj::READY_NOW;
  }
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy >= 0) copy = placeOwn(copy);
  if (copy < 0) {
    log(kj::str("reads of fd ", fd, " cannot be pushed (no copy of it: ", strerror(errno), "): they stay calls"));
    results.setEnd(rpc::PeekEnd::NOT_PUSHABLE);
    return kj::READY_NOW;
  }
  const uint64_t window = kj::min(uint64_t{p.getWindow()}, kMaxAhead);
  results.setPushing(kj::heap<Pusher>(*this, port_, fd, copy, from, window, p.getSink()));
  return kj::READY_NOW;
}

// Looks at the bytes of `fd` past the `skip` bytes not yet taken, at most `max` of
// them, without taking them: BYTES (n of them at the start of buffer_), NONE_YET,
// END (no byte past `skip` will come) or FAILED (`error`; the socket's error is
// then given, as a read would). A socket is looked at from `skip` on with SO_PEEK_OFF
// past kCopySkipped (put back after: a job back home peeks from its start), else and a
// pipe (with tee(2)) from its start (a pipe holds little).
PushedReads::Found PushedReads::peekBytes(int fd, bool pipe, size_t skip, size_t max, size_t& n, int& error) {
  if (buffer_.size() < skip + max) buffer_.resize(skip + max);
  long r;
  size_t at = skip;  // where the new bytes start in buffer_
  if (!pipe) {
    int off = static_cast<int>(skip);
    if (skip > kCopySkipped && setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) == 0) {
      r = recv(fd, buffer_.data(), max, MSG_PEEK | MSG_DONTWAIT);
      error = errno;
      off = -1;
      setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off));
      if (r > 0) r += static_cast<long>(skip);
      at = 0;
    } else {
      r = recv(fd, buffer_.data(), skip + max, MSG_PEEK | MSG_DONTWAIT);
      error = errno;
    }
  } else {
    if (scratch_[0] < 0) {
      int p[2];
      if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        error = errno;
        return Found::FAILED;
      }
      scratch_[0] = placeOwn(p[0]);
      scratch_[1] = placeOwn(p[1]);
      if (scratch_[0] < 0 || scratch_[1] < 0) {
        error = EMFILE;
        return Found::FAILED;
      }
      fcntl(scratch_[1], F_SETPIPE_SZ, kScratchSize);  // else the default: a home pipe's own
    }
    r = tee(fd, scratch_[1], skip + max, SPLICE_F_NONBLOCK);
    error = errno;
    for (long got = 0; got < r;) {
      const long m = read(scratch_[0], buffer_.data() + got, r - got);
      if (m <= 0) {
        error = EIO;
        return Found::FAILED;
      }
      got += m;
    }
  }
  if (r > static_cast<long>(skip)) {
    n = static_cast<size_t>(r) - skip;
    if (at > 0) memmove(buffer_.data(), buffer_.data() + at, n);
    return Found::BYTES;
  }
  if (r == 0) return Found::END;  // the end, after the bytes not yet taken
  if (r < 0 && error != EAGAIN) return Found::FAILED;
  return Found::NONE_YET;  // none past what was sent (a pipe: its end shows once they are taken)
}

kj::Promise<void> PushedReads::taken(TakenContext context) {
  auto p = context.getParams();
  const int fd = p.getFd();
  auto reads = p.getReads();
  const size_t count = reads.size() / sizeof(rsc::RequestHeader);
  uint64_t bytes = 0;
  for (size_t i = 0; i < count; ++i) {
    rsc::RequestHeader h;
    memcpy(&h, reads.begin() + i * sizeof(h), sizeof(h));
    bytes += static_cast<uint64_t>(h.args[2]);
  }
  Stream& s = streams_[fd];
  if (p.getAt() + bytes <= s.taken) return kj::READY_NOW;  // sent again after a broken link: it ran
  if (p.getAt() != s.taken) {
    log(kj::str("fd ", fd, ": reads pushed from offset ", p.getAt(), " came while ", s.taken,
                " bytes were taken: not taken again"));
    return kj::READY_NOW;
  }
  for (size_t i = 0; i < count; ++i) {
    rsc::RequestHeader h;
    memcpy(&h, reads.begin() + i * sizeof(h), sizeof(h));
    // The bytes were looked at here and no one else was to read them; if someone did,
    // a read must still not wait on the event loop.
    int ready = 0;
    if (ioctl(fd, FIONREAD, &ready) != 0 || ready <= 0) {
      log(kj::str("fd ", fd, ": bytes pushed to the job were read by another process at home"));
      break;
    }
    if (h.args[2] > ready) h.args[2] = ready;
    const int64_t n = runRead_(kj::arrayPtr(reinterpret_cast<const kj::byte*>(&h), sizeof(h)));
    if (n > 0) s.taken += static_cast<uint64_t>(n);
  }
  for (Pusher* p : s.pushers) p->kick();
  // The readiness watches look again; answered without waiting for their tokens (no
  // reply of the job's waits on this one, and a stand-in the job never drains would
  // hold it).
  tasks_.add(inputTaken_(fd));
  return kj::READY_NOW;
}

}  // namespace mig::deputy
