// Peeking and taking the job's home streams for reads pushed ahead (pushed_reads.h).
#include "deputy/pushed_reads.h"

#include "deputy/log.h"
#include "deputy/own_fds.h"
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

// A peek past this many bytes not yet taken is not the link's window: out of step.
constexpr uint64_t kMaxAhead = 16u << 20;
// The pipe a pipe's bytes are copied into to be looked at: as big as a pipe may be
// made without privilege, so it holds whatever a home pipe holds.
constexpr int kScratchSize = 1 << 20;

// Whether reads of `fd` may be pushed: a blocking stream socket that is no listener,
// or a pipe (FIFO). `pipe` says which.
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

// A peek that waits for bytes past its offset: an observer of its own copy of the fd
// (the job may close its number meanwhile; the readiness watches observe copies too),
// and the takes of the stream, after which its end may be reached.
class PushedReads::Waiting {
 public:
  Waiting(kj::UnixEventPort& port, int copy)
      : fd_(copy), observer_(port, fd_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ) {
    unmark_.fd = copy;
  }

  // Resolves at the next edge of the fd's readability or the next take; asked before
  // the bytes are looked at, so none falls in between.
  kj::Promise<void> next(Stream& s) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    s.waiters.add(kj::mv(paf.fulfiller));
    return observer_.whenBecomesReadable().exclusiveJoin(kj::mv(paf.promise));
  }

 private:
  struct Unmark {
    int fd = -1;
    ~Unmark() { markOwn(fd, false); }
  };
  Unmark unmark_;  // before fd_: unmarks it after it is closed
  kj::AutoCloseFd fd_;
  kj::UnixEventPort::FdObserver observer_;
};

PushedReads::PushedReads(kj::UnixEventPort& port, kj::Function<int64_t(kj::ArrayPtr<const kj::byte>)> runRead,
                         kj::Function<kj::Promise<void>(int fd)> inputTaken)
    : port_(port), runRead_(kj::mv(runRead)), inputTaken_(kj::mv(inputTaken)) {}

PushedReads::~PushedReads() {
  for (int fd : scratch_) {
    if (fd >= 0) {
      close(fd);
      markOwn(fd, false);
    }
  }
}

kj::Promise<void> PushedReads::peek(PeekContext context) {
  context.allowCancellation();  // the link drops a peek it no longer wants
  auto p = context.getParams();
  const int fd = p.getFd();
  uint64_t from = p.getFrom();
  if (p.getFresh()) {
    bool pipe = false;
    if (!pushable(fd, pipe)) {
      context.getResults().setEnd(rpc::PeekEnd::NOT_PUSHABLE);
      return kj::READY_NOW;
    }
    Stream& s = streams_[fd];
    s.pipe = pipe;
    from = s.taken;
  }
  return look(context, fd, from, kj::min(p.getMax(), rsc::kMaxIo), kj::Own<Waiting>());
}

kj::Promise<void> PushedReads::look(PeekContext context, int fd, uint64_t from, uint32_t max, kj::Own<Waiting> wait) {
  auto results = context.getResults();
  results.setAt(from);
  auto it = streams_.find(fd);
  if (it == streams_.end() || from < it->second.taken || from - it->second.taken > kMaxAhead) {
    results.setEnd(rpc::PeekEnd::OUT_OF_STEP);
    return kj::READY_NOW;
  }
  Stream& s = it->second;
  const size_t skip = from - s.taken;
  kj::Promise<void> next = nullptr;
  if (wait.get() != nullptr) next = wait->next(s);
  const long n = peekBytes(fd, s.pipe, skip + max);
  const int error = errno;
  if (n > static_cast<long>(skip)) {
    memcpy(results.initData(n - skip).begin(), buffer_.data() + skip, n - skip);
    return kj::READY_NOW;
  }
  if (skip == 0 && n == 0) {
    results.setEnd(rpc::PeekEnd::END_OF_STREAM);
    return kj::READY_NOW;
  }
  if (skip == 0 && n < 0 && error != EAGAIN) {
    results.setEnd(rpc::PeekEnd::FAILED);
    results.setError(error);
    return kj::READY_NOW;
  }
  if (n == 0 || (n < 0 && error != EAGAIN)) {  // bytes not taken here are gone: another reader
    results.setEnd(rpc::PeekEnd::OUT_OF_STEP);
    return kj::READY_NOW;
  }
  // Nothing past `from` yet.
  if (wait.get() == nullptr) {
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy >= 0) copy = placeOwn(copy);
    if (copy < 0) {
      log(kj::str("reads of fd ", fd, " cannot be pushed (no copy of it: ", strerror(errno), "): they stay calls"));
      results.setEnd(rpc::PeekEnd::NOT_PUSHABLE);
      return kj::READY_NOW;
    }
    return look(context, fd, from, max, kj::heap<Waiting>(port_, copy));
  }
  return next.then([this, context, fd, from, max, wait = kj::mv(wait)]() mutable {
    return look(context, fd, from, max, kj::mv(wait));
  });
}

// Copies up to `len` bytes of `fd` into buffer_ without taking them: the count, 0 at
// the end of the stream, or -1 with errno (EAGAIN: none yet).
long PushedReads::peekBytes(int fd, bool pipe, size_t len) {
  if (buffer_.size() < len) buffer_.resize(len);
  if (!pipe) return recv(fd, buffer_.data(), len, MSG_PEEK | MSG_DONTWAIT);
  if (scratch_[0] < 0) {
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    scratch_[0] = placeOwn(p[0]);
    scratch_[1] = placeOwn(p[1]);
    if (scratch_[0] < 0 || scratch_[1] < 0) return -1;
    fcntl(scratch_[1], F_SETPIPE_SZ, kScratchSize);  // else the default: a home pipe's own
  }
  const long n = tee(fd, scratch_[1], len, SPLICE_F_NONBLOCK);
  if (n <= 0) return n;
  long got = 0;
  while (got < n) {
    const long r = read(scratch_[0], buffer_.data() + got, n - got);
    if (r <= 0) return -1;
    got += r;
  }
  return n;
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
  for (auto& w : s.waiters) w->fulfill();
  s.waiters.clear();
  return inputTaken_(fd);
}

}  // namespace mig::deputy
