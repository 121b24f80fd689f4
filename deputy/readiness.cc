// Watching home fds for the job's readiness stand-ins (readiness.h).
#include "deputy/readiness.h"

#include "deputy/own_fds.h"
#include "shadow/error.h"

#include <kj/debug.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>

namespace mig::deputy {
namespace {

// The identity of an open file, to tell which watches a call on some fd concerns
// (the job may have it under several numbers).
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const FileId&) const = default;
};

// MIG_FAULT=deputy-watch (the job's environment, for tests): every watch fails as if
// the deputy's fd table were full.
bool faultInjected() {
  const char* f = getenv("MIG_FAULT");
  return f != nullptr && strcmp(f, "deputy-watch") == 0;
}

bool fileOf(int fd, FileId& id) {
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  id = {st.st_dev, st.st_ino};
  return true;
}

}  // namespace

// One home fd watched for a readiness stand-in on the job's host. It watches its own
// copy of the fd, so the job's closing or reusing the number cannot make it watch
// something else.
class Watch final : public rpc::ReadinessWatch::Server {
 public:
  Watch(kj::UnixEventPort& port, kj::TaskSet& tasks, kj::Vector<Watch*>& all, int fd, rpc::Readiness::Client readiness)
      : tasks_(tasks), all_(all), fd_(duplicate(fd)), observer_(port, fd_, kj::UnixEventPort::FdObserver::OBSERVE_READ),
        readiness_(kj::mv(readiness)) {
    unmark_.fd = fd_.get();
    KJ_REQUIRE(fileOf(fd_, file_));
    all_.add(this);
    arm();
  }
  ~Watch() noexcept(false) {
    for (size_t i = 0; i < all_.size(); ++i) {
      if (all_[i] == this) {
        all_[i] = all_.back();
        all_.removeLast();
        break;
      }
    }
  }

  const FileId& file() const { return file_; }

  // A call that takes input from the file has run: whatever was announced may be
  // gone, or more may wait. Looked at now, not on a later turn, so the token for what
  // is left is sent before the call is answered.
  void inputTaken() {
    if (!told_) return;
    told_ = false;
    if (readableNow()) {
      tell();
    } else {
      arm();
    }
  }

  // Resolves once every token sent so far is in the stand-in's connection.
  kj::Promise<void> delivered() { return delivered_.addBranch(); }

 private:
  // The copy goes where the deputy keeps its own fds (own_fds.h), out of the job's
  // numbers.
  static kj::AutoCloseFd duplicate(int fd) {
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy >= 0) copy = placeOwn(copy);
    if (copy >= 0 && faultInjected()) {
      close(copy);
      copy = -1;
      errno = EMFILE;
    }
    if (copy < 0) shadow::fail(kj::str("the deputy cannot keep a copy of it: ", strerror(errno)));
    return kj::AutoCloseFd(copy);
  }

  // Unmarks the copy once it is closed.
  struct Unmark {
    int fd = -1;
    ~Unmark() { markOwn(fd, false); }
  };

  bool readableNow() {
    struct pollfd p = {fd_.get(), POLLIN, 0};
    return poll(&p, 1, 0) == 1;  // data, a connection to accept, EOF, an error or a hangup
  }

  // Resolves once the fd is readable. The observer reports edges only: the wait is
  // asked for first, then the level looked at, so no edge falls in between.
  kj::Promise<void> readable() {
    auto edge = observer_.whenBecomesReadable();
    if (readableNow()) return kj::READY_NOW;
    return edge.then([this]() { return readable(); });
  }

  void arm() {
    waiting_ = readable().then([this]() { tell(); }).eagerlyEvaluate([](kj::Exception&&) {});
  }

  // A relay that is gone (the job closed the stand-in, the link broke) delivers
  // nothing more: its failure counts as delivered, so no answer waits on it.
  void tell() {
    told_ = true;
    auto sent = readiness_.readyRequest().send().ignoreResult().catch_([](kj::Exception&&) {});
    delivered_ = delivered_.addBranch().then([sent = kj::mv(sent)]() mutable { return kj::mv(sent); }).fork();
  }

  kj::TaskSet& tasks_;
  kj::Vector<Watch*>& all_;
  Unmark unmark_;  // before fd_: unmarks it after it is closed
  kj::AutoCloseFd fd_;
  kj::UnixEventPort::FdObserver observer_;
  rpc::Readiness::Client readiness_;
  FileId file_;
  bool told_ = false;
  kj::ForkedPromise<void> delivered_ = kj::Promise<void>(kj::READY_NOW).fork();
  kj::Promise<void> waiting_ = nullptr;
};

kj::Own<rpc::ReadinessWatch::Server> Readiness::watch(int fd, rpc::Readiness::Client readiness) {
  // Not open here: the job closed it after its host asked (a close runs at home before
  // the stand-in is closed, and calls do not wait for watches). Its stand-in ends with
  // it, so nothing is watched and nothing failed.
  if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) return kj::heap<rpc::ReadinessWatch::Server>();
  return kj::heap<Watch>(port_, tasks_, watches_, fd, kj::mv(readiness));
}

kj::Promise<void> Readiness::inputTaken(int fd) {
  FileId file;
  if (watches_.empty() || !fileOf(fd, file)) return kj::READY_NOW;
  kj::Vector<kj::Promise<void>> delivered;
  for (Watch* w : watches_) {
    if (w->file() != file) continue;
    w->inputTaken();
    delivered.add(w->delivered());
  }
  return kj::joinPromises(delivered.releaseAsArray());
}

}  // namespace mig::deputy
