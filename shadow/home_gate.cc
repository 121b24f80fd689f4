// A tree's hop home, all or none: the gate at home where its members' restorers wait for
// the tree's go (home_gate.h).
#include "shadow/home_gate.h"

#include "shadow/daemon.h"
#include "shadow/error.h"
#include "shadow/tree_homecoming.h"

#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/map.h>
#include <kj/vector.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

// As long as home gives one member's restore (node_service.cc kRestoreTimeoutMs): no go
// by then calls the return off. The decision is kept a while longer, for a member whose
// commit comes late.
constexpr uint64_t kGateLimitMs = 120000;
constexpr uint64_t kGateKeptMs = 30000;

class HomeGate final : private kj::TaskSet::ErrorHandler {
 public:
  HomeGate(Daemon& d, uint64_t hop, uint32_t members) : d_(d), hop_(hop), tally_(members), tasks_(*this) {
    name_ = kj::str("@mig-tree-gate-", kj::hex(hop));
    sockaddr_un addr{};
    socklen_t len = abstractAddress(name_, addr);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd, 64) != 0) {
      int err = errno;
      if (fd >= 0) close(fd);
      fail(kj::str("cannot open the gate of a tree's hop home (", name_, "): ", strerror(err)));
    }
    listener_ = d.io().lowLevelProvider->wrapListenSocketFd(
        fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK |
                kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);
    tasks_.add(acceptNext());
    tasks_.add(d.io().provider->getTimer().afterDelay(kGateLimitMs * kj::MILLISECONDS).then([this]() {
      callOff(kj::str("not every member was ready within ", kGateLimitMs / 1000, " s"));
    }));
  }

  kj::StringPtr name() const { return name_; }
  bool calledOff() const { return tally_.decided() == TreeGoTally::Step::CALL_OFF; }
  void join(pid_t pid) { members_.add(pid); }

  void callOff(kj::StringPtr why) {
    if (tally_.decided() != TreeGoTally::Step::WAIT) return;
    tally_.failed();
    d_.log(kj::str("tree hop home ", kj::hex(hop_), ": called off (", why, "): every member's deputy comes back"));
    dropWaiting();  // each restorer reads the end of its connection and comes back
  }

 private:
  struct Waiting {
    pid_t pid;
    kj::Own<kj::AsyncIoStream> stream;
    char said = 0;
    kj::Promise<void> reading = nullptr;  // destroyed before the stream
  };

  static socklen_t abstractAddress(kj::StringPtr name, sockaddr_un& addr) {
    addr.sun_family = AF_UNIX;
    size_t n = std::min(name.size() - 1, sizeof(addr.sun_path) - 1);
    memcpy(addr.sun_path + 1, name.begin() + 1, n);  // sun_path[0] stays 0: abstract
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
  }

  kj::Promise<void> acceptNext() {
    return listener_->accept().then([this](kj::Own<kj::AsyncIoStream> s) {
      take(kj::mv(s));
      return acceptNext();
    });
  }

  // Only the members' own processes count (a restorer is its deputy's process).
  void take(kj::Own<kj::AsyncIoStream> s) {
    ucred who{};
    socklen_t len = sizeof(who);
    int fd = KJ_ASSERT_NONNULL(s->getFd());
    bool member = false;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &who, &len) == 0) {
      for (pid_t p : members_) member |= p == who.pid;
    }
    if (!member || calledOff()) return;  // closed: a member's restorer then comes back
    auto w = kj::heap<Waiting>();
    w->pid = who.pid;
    w->stream = kj::mv(s);
    Waiting* at = w.get();
    w->reading = w->stream->tryRead(&w->said, 1, 1)
                     .then([this, at](size_t n) {
                       if (n == 1 && at->said == 'R') {
                         if (tally_.ready(at->pid) == TreeGoTally::Step::GO) go();
                       } else {
                         callOff(kj::str("the restore of its process ", at->pid, " at home ended before it was ready"));
                       }
                     },
                     [this, at](kj::Exception&& e) {
                       callOff(kj::str("the gate's connection of its process ", at->pid, " broke: ",
                                       e.getDescription()));
                     })
                     .eagerlyEvaluate(nullptr);
    waiting_.add(kj::mv(w));
  }

  // Every member is at its point of no return: each restorer runs its member now.
  void go() {
    d_.log(kj::str("tree hop home ", kj::hex(hop_), ": every member is ready, the tree runs at home"));
    const char g = 'G';
    for (auto& w : waiting_) {
      // One byte on a connection that holds none: never blocks. A restorer gone since
      // was past its last step that can fail (its process ended: that member's end).
      (void)!send(KJ_ASSERT_NONNULL(w->stream->getFd()), &g, 1, MSG_NOSIGNAL);
    }
    dropWaiting();
  }

  // Closed later, not inside a connection's own read callback.
  void dropWaiting() {
    tasks_.add(kj::evalLater([this]() { waiting_.clear(); }));
  }

  void taskFailed(kj::Exception&& e) override {
    callOff(kj::str("the gate failed: ", e.getDescription()));
  }

  Daemon& d_;
  uint64_t hop_;
  kj::String name_;
  TreeGoTally tally_;
  kj::Vector<pid_t> members_;
  kj::Own<kj::ConnectionReceiver> listener_;
  kj::Vector<kj::Own<Waiting>> waiting_;
  kj::TaskSet tasks_;  // last: its tasks use the members above
};

// One daemon per process: its gates, by hop. Never destroyed (a gate outliving the
// event loop at exit must not close its listener then).
kj::HashMap<uint64_t, kj::Own<HomeGate>>& gates() {
  static auto* all = new kj::HashMap<uint64_t, kj::Own<HomeGate>>();
  return *all;
}

}  // namespace

kj::Maybe<kj::String> joinHomeGate(Daemon& d, uint64_t hop, uint32_t members, pid_t pid) {
  HomeGate* gate = nullptr;
  KJ_IF_MAYBE(g, gates().find(hop)) { gate = g->get(); }
  if (gate == nullptr) {
    auto made = kj::heap<HomeGate>(d, hop, members);
    gate = made.get();
    gates().insert(hop, kj::mv(made));
    d.tasks().add(d.io().provider->getTimer()
                      .afterDelay((kGateLimitMs + kGateKeptMs) * kj::MILLISECONDS)
                      .then([hop]() { gates().erase(hop); }));
  }
  if (gate->calledOff()) return nullptr;
  gate->join(pid);
  return kj::str(gate->name());
}

void callOffHomeGate(uint64_t hop, kj::StringPtr why) {
  KJ_IF_MAYBE(g, gates().find(hop)) { (*g)->callOff(why); }
}

}  // namespace mig::shadow
