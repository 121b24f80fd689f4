// mig-deputy: what a job's home process becomes at its first migration. The shim
// execs it in place, so it is the same process: same PID, same parent (which still
// waits for it), same fds (files, pipes, the terminal), same process group. It
//   - registers with the home shadowd as the job's deputy, and again with a restarted
//     one, giving back the record that shadowd kept with it (this file);
//   - runs the job's forwarded system calls (rsc/wire.h) through the rsc dispatcher,
//     with the job's fds, cwd and identity (call_runner.h), coming over the job's
//     direct link from the host it runs on (shadow/direct_link.h) or through shadowd;
//   - watches the job's sockets, pipes and terminal for readability, for their
//     readiness stand-ins where the job runs (readiness.h), and lets the job's host
//     look ahead at its stream sockets and pipes for reads pushed there (pushed_reads.h);
//   - forwards the signals it receives (kill, sigqueue, Ctrl-C and Ctrl-Z on its
//     terminal) to the job with their siginfo, and stops with the job (signals.h);
//   - keeps a stand-in in its process group, by which it tells the signals sent to
//     the group, which go to the job's group where it runs (stand_in.h);
//   - ends the way the job ends (exit status or signal), so its parent sees that,
//     or with status 87 when the job's link home stayed broken past the limit and the
//     job is lost (this file);
//   - becomes the job again when a hop brings it back home (homecoming.h).
// It prints nothing: its stdout and stderr are the job's.
//
// usage: MIG_JOB_TOKEN=HEX mig-deputy --job-id ID --socket SHADOWD_SOCKET [--drop-signals MASK] [--ready NAME]
//        mig-deputy --check --socket SHADOWD_SOCKET
// (--ready: once registered, it says so on the hop's sender's socket NAME; --check: a
// trial start in a process of its own, before a hop from home: exit 0 if it starts and
// reaches shadowd, else one line why; shadow/deputy_start.h; MIG_DEPUTY_PROBE in the
// environment: exit 0 at once, the job's shim proving that the job can exec it)
// (MIG_LINK_LOST_AFTER=S in the job's environment: its own limit for a broken link)
#include "deputy/call_runner.h"
#include "deputy/homecoming.h"
#include "deputy/log.h"
#include "deputy/own_fds.h"
#include "deputy/pushed_reads.h"
#include "deputy/readiness.h"
#include "deputy/signals.h"
#include "deputy/stand_in.h"
#include "rsc/child_locks.h"
#include "shadow/direct_link.h"
#include "shadow/error.h"
#include "shadow/hex.h"
#include "shadow/hop_fault.h"
#include "shadow/mig.capnp.h"

#include <capnp/rpc-twoparty.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <dirent.h>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::deputy {
namespace {

[[noreturn]] void endLike(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);  // the job dumped (or not) where it ran
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
    raise(sig);
    _exit(128 + sig);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

// The deputy's exit status when the job's link home stayed broken past the limit
// (shadowd --link-lost-after): the job is lost, its parent learns it from this
// (docs/design.md "Exactly-once after a broken link").
constexpr int kLinkLostStatus = 87;

// Home's record of the job (where it runs, its command, when it started, its tree), as
// shadowd last gave it (Deputy.keepRecord): a restarted shadowd learns the job back from
// it (Local.registerDeputy again).
struct KeptRecord {
  capnp::MallocMessageBuilder message;
  bool kept = false;
};

class DeputyImpl final : public rpc::Deputy::Server {
 public:
  DeputyImpl(kj::AsyncIoContext& io, kj::UnixEventPort& port, kj::TaskSet& tasks, KeptRecord& kept, uint64_t jobId,
             kj::ArrayPtr<const kj::byte> token, kj::StringPtr socketPath)
      : io_(io), tasks_(tasks), kept_(kept), readiness_(port, tasks), calls_([this](int fd) { return readiness_.inputTaken(fd); }),
        pushed_(port, [this](kj::ArrayPtr<const kj::byte> read) { return calls_.runTaken(read); },
                [this](int fd) { return readiness_.inputTaken(fd); }),
        jobId_(jobId), token_(kj::heapArray(token)), socketPath_(kj::str(socketPath)) {}

  // Back after a failed hop home (homecoming.h): the answers it had given, and its
  // ticket's listener, on which the relay resumes the link.
  void comeBack(ComeBack& c, kj::ArrayPtr<const kj::byte> carried) {
    calls_.takeCarried(carried);
    if (c.linkFd < 0) return;
    shadow::OwnFds own{placeOwn, [](int fd) { markOwn(fd, false); }};
    shadow::LinkSecret secret{kj::mv(c.linkKey), c.linkPlaintext ? shadow::LinkMode::PLAINTEXT : shadow::LinkMode::ENCRYPTED};
    const uint64_t lostAfterMs = c.linkLostAfterMs;
    link_ = kj::heap<shadow::DirectLinkServer>(*io_.lowLevelProvider, io_.provider->getTimer(), c.linkFd, kj::mv(secret),
                                               thisCap(), lostAfterMs, own,
                                               [this, lostAfterMs](uint64_t downMs) { lost(downMs, lostAfterMs); });
    log(kj::str("direct link: listening again on port ", KJ_ASSERT_NONNULL(link_)->port(), " for the job's host"));
  }

  // The home shadowd it is registered with (again after a restart): told if the job is lost.
  void registeredWith(rpc::Local::Client local) { local_ = kj::mv(local); }
  // Its group stand-in, told to end with the job (stand_in.h).
  void keepsStandIn(StandIn& standIn) { standIn_ = standIn; }
  // The job's own limit for a broken link, for its home shadowd (0: home's own).
  uint64_t ownLostAfterMs() const { return ownLostAfterMs_; }

  kj::Promise<void> keepRecord(KeepRecordContext context) override {
    kept_.message.setRoot(context.getParams().getRecord());
    kept_.kept = true;
    return kj::READY_NOW;
  }

  kj::Promise<void> watch(WatchContext context) override {
    auto p = context.getParams();
    context.getResults().setWatch(readiness_.watch(p.getFd(), p.getReadiness()));
    return kj::READY_NOW;
  }

  kj::Promise<void> call(CallContext context) override { return calls_.call(kj::mv(context)); }
  kj::Promise<void> pushReads(PushReadsContext context) override { return pushed_.push(kj::mv(context)); }
  kj::Promise<void> taken(TakenContext context) override { return pushed_.taken(kj::mv(context)); }

  kj::Promise<void> cancel(CancelContext context) override {
    auto p = context.getParams();
    return calls_.cancel(p.getThread(), p.getSeq(), io_.provider->getTimer());
  }

  kj::Promise<void> ended(EndedContext context) override {
    const int status = context.getParams().getStatus();
    log(kj::str("the job ended (wait status ", status, "): ending the same way"));
    KJ_IF_MAYBE(s, standIn_) { s->end(); }
    endLike(status);
  }

  // A hop back home, committed: the job is restored into this process (homecoming.h).
  // Never answered: the process becomes the job (its shadowd sees the connection end).
  kj::Promise<void> becomeJob(BecomeJobContext context) override {
    auto p = context.getParams();
    auto migctl = kj::str(p.getMigctl()), image = kj::str(p.getImage()), logPath = kj::str(p.getLog()),
         fault = kj::str(p.getFault()), gate = kj::str(p.getGate());
    const bool comeBack = p.getComeBack();
    return calls_.stopForHomecoming(io_.provider->getTimer(), kHomecomingCancelMs)
        .then([this, migctl = kj::mv(migctl), image = kj::mv(image), logPath = kj::mv(logPath), fault = kj::mv(fault),
               gate = kj::mv(gate), comeBack]() {
          KJ_IF_MAYBE(s, standIn_) { s->end(); }  // back home, the job's children are the kernel's to signal
          execHomecomingRestart(migctl, image, logPath, calls_.carriedReplies(),
                                comeBack ? kj::Maybe<ComeBack>(comeBackState()) : nullptr, fault, gate);
        });
  }

  // The direct link (shadow/direct_link.h): the same Deputy, served on a connection of
  // its own to the host the job runs on, keyed by the ticket home made for it.
  kj::Promise<void> openDirectLink(OpenDirectLinkContext context) override {
    auto p = context.getParams();
    KJ_REQUIRE(p.getKey().size() == 32, "a direct link key is 32 bytes");
    shadow::LinkSecret secret{kj::heapArray<kj::byte>(p.getKey()),
                              p.getPlaintext() ? shadow::LinkMode::PLAINTEXT : shadow::LinkMode::ENCRYPTED};
    auto host = kj::str(p.getHost());
    log(kj::str("direct link: listening on ", host, " for the job's host"));
    // Its sockets go where the deputy's own fds live (own_fds.h): the job's calls at
    // home make and close fds under the numbers the job chose.
    shadow::OwnFds own{placeOwn, [](int fd) { markOwn(fd, false); }};
    const uint64_t lostAfterMs = p.getLostAfterMs() > 0 && ownLostAfterMs_ > 0 ? ownLostAfterMs_ : p.getLostAfterMs();
    if (lostAfterMs > 0) {
      // Resumable: the link may break and come back on this port with this key; the
      // ticket of the job's next host replaces this one.
      link_ = nullptr;
      auto server = kj::heap<shadow::DirectLinkServer>(
          *io_.lowLevelProvider, io_.provider->getTimer(), host, kj::mv(secret), thisCap(), kDirectLinkAcceptMs,
          lostAfterMs, own, [this, lostAfterMs](uint64_t downMs) { lost(downMs, lostAfterMs); });
      context.getResults().setPort(server->port());
      context.getResults().setLostAfterMs(lostAfterMs);
      link_ = kj::mv(server);
      return kj::READY_NOW;
    }
    return shadow::serveDirectLink(*io_.lowLevelProvider, io_.provider->getTimer(), host, kj::mv(secret), thisCap(),
                                   tasks_, kDirectLinkAcceptMs, own)
        .then([context](uint16_t port) mutable { context.getResults().setPort(port); });
  }

 private:
  // What homecoming.h's restart needs to make this deputy again.
  ComeBack comeBackState() {
    ComeBack c;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    KJ_REQUIRE(n > 0, "cannot read the deputy's own program name", strerror(errno));
    c.deputy = kj::heapString(exe, static_cast<size_t>(n));
    c.jobId = jobId_;
    c.socket = kj::str(socketPath_);
    c.token = kj::heapArray<kj::byte>(token_);
    KJ_IF_MAYBE(l, link_) {
      c.linkFd = (*l)->listenFd();
      c.linkKey = kj::heapArray<kj::byte>((*l)->secret().key);
      c.linkPlaintext = (*l)->secret().mode == shadow::LinkMode::PLAINTEXT;
      c.linkLostAfterMs = (*l)->lostAfterMs();
    }
    if (kept_.kept) {
      auto words = capnp::messageToFlatArray(kept_.message);
      c.record = kj::heapArray<kj::byte>(words.asBytes());
    }
    return c;
  }

  // The job's link stayed broken past the limit: home is told (it lists the job as
  // lost), and the deputy ends with kLinkLostStatus, so its parent's wait returns.
  void lost(uint64_t downMs, uint64_t limitMs) {
    log(kj::str("job ", jobId_, ": its direct link has been broken for ", downMs / 1000.0, " s (limit ",
                limitMs / 1000.0, " s): the job is lost; ending with status ", kLinkLostStatus));
    KJ_IF_MAYBE(local, local_) {
      auto req = local->linkLostRequest();
      req.setJobId(jobId_);
      req.setToken(token_);
      req.setDownMs(downMs);
      req.setLimitMs(limitMs);
      constexpr uint64_t kTellMs = 5000;  // shadowd may be gone: the parent is not kept waiting
      tasks_.add(io_.provider->getTimer()
                     .timeoutAfter(kTellMs * kj::MILLISECONDS, req.send().ignoreResult())
                     .then([]() { _exit(kLinkLostStatus); }, [](kj::Exception&&) { _exit(kLinkLostStatus); }));
      return;
    }
    _exit(kLinkLostStatus);
  }

  // The host the job runs on connects at once; a ticket not used by then is void.
  static constexpr uint64_t kDirectLinkAcceptMs = 10000;
  // A call that cannot be cancelled (a connect, a pipelined write to a full pipe) is
  // waited for this long before the job comes home all the same.
  static constexpr uint64_t kHomecomingCancelMs = 10000;
  kj::AsyncIoContext& io_;
  kj::TaskSet& tasks_;
  KeptRecord& kept_;
  Readiness readiness_;
  CallRunner calls_;
  PushedReads pushed_;
  kj::Maybe<rpc::Local::Client> local_;
  kj::Maybe<StandIn&> standIn_;
  uint64_t jobId_;
  kj::Array<kj::byte> token_;
  kj::String socketPath_;
  kj::Maybe<kj::Own<shadow::DirectLinkServer>> link_;  // the current ticket's, when resumable
  // The job's own limit for a broken link (its environment's MIG_LINK_LOST_AFTER,
  // seconds), in place of its home shadowd's --link-lost-after; 0: home's.
  uint64_t ownLostAfterMs_ = limitFromEnv();
  static uint64_t limitFromEnv() {
    const char* v = getenv("MIG_LINK_LOST_AFTER");
    if (v == nullptr) return 0;
    char* end = nullptr;
    double s = strtod(v, &end);
    if (end == v || *end != '\0' || !(s > 0) || s > 7 * 86400) {
      log(kj::str("MIG_LINK_LOST_AFTER='", v, "' is not a number of seconds (0 < S <= 604800): home's limit holds"));
      return 0;
    }
    return static_cast<uint64_t>(s * 1000);
  }
};

// Everything in `fd` (a memfd handed over an exec), from its start.
kj::Array<kj::byte> readWhole(int fd) {
  kj::Vector<kj::byte> out;
  kj::byte buf[4096];
  for (off_t at = 0;;) {
    ssize_t n = pread(fd, buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    KJ_REQUIRE(n >= 0, "cannot read a table handed over", strerror(errno));
    if (n == 0) break;
    out.addAll(buf, buf + n);
    at += n;
  }
  return out.releaseAsArray();
}

// The job's fds, open when the deputy starts (sorted): none of them is the deputy's.
kj::Vector<int> jobFds() {
  kj::Vector<int> fds;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (struct dirent* e = readdir(d)) {
      if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && atoi(e->d_name) != dirfd(d)) fds.add(atoi(e->d_name));
    }
    closedir(d);
  }
  std::sort(fds.begin(), fds.end());
  return fds;
}

// The deputy's own fds (event loop, shadowd connection) must not take numbers the job
// may use (own_fds.h): it opens them while every number below lowestOwn() is taken by
// a placeholder.
kj::Vector<int> fillLowFds() {
  kj::Vector<int> placeholders;
  const int top = lowestOwn();
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0) return placeholders;
  for (int fd = 0; fd < top; ++fd) {
    if (fcntl(fd, F_GETFD) >= 0) continue;
    if (dup3(null, fd, O_CLOEXEC) == fd) placeholders.add(fd);
  }
  if (null >= top) close(null);
  else placeholders.add(null);
  return placeholders;
}

// The deputy's connection to its home shadowd (its fd among the deputy's own).
struct ShadowdConnection {
  ShadowdConnection(kj::Own<kj::AsyncIoStream> s, int placed) : stream(kj::mv(s)), client(*stream), fd(placed) {}
  ~ShadowdConnection() noexcept(false) {
    if (fd >= 0) markOwn(fd, false);
  }
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyClient client;
  int fd;
};

// Connects to a restarted shadowd's socket: tries from 100 ms apart, doubling up to 5 s
// apart, for as long as the job lives; one log line for each new reason it could not.
kj::Own<ShadowdConnection> connectAgain(kj::AsyncIoContext& io, const char* path) {
  uint64_t delayMs = 100;
  kj::String lastWhy = kj::str("");
  for (;;) {
    io.provider->getTimer().afterDelay(delayMs * kj::MILLISECONDS).wait(io.waitScope);
    delayMs = kj::min(delayMs * 2, uint64_t{5000});
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0) fd = placeOwn(fd);  // out of the job's numbers (own_fds.h)
    kj::String why;
    if (fd >= 0) {
      struct sockaddr_un sa {};
      sa.sun_family = AF_UNIX;
      strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
      if (connect(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa)) == 0) {
        auto stream = io.lowLevelProvider->wrapSocketFd(
            fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                    kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
        return kj::heap<ShadowdConnection>(kj::mv(stream), fd);
      }
      why = kj::str(strerror(errno));
      markOwn(fd, false);
      close(fd);
    } else {
      why = kj::str(strerror(errno));
    }
    if (why != lastWhy) log(kj::str("the home shadowd is not back yet (", why, "); trying again"));
    lastWhy = kj::mv(why);
  }
}

// The hop's sender waits for this word to know that the deputy started (deputy_start.h):
// said once, the first time the deputy registered.
void sayRegistered(const char* name) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) fd = placeOwn(fd);  // out of the job's numbers (own_fds.h)
  if (fd < 0) return;
  struct sockaddr_un sa {};
  sa.sun_family = AF_UNIX;
  size_t n = std::min(strlen(name), sizeof(sa.sun_path) - 1);
  memcpy(sa.sun_path + 1, name, n);
  const char word = 'R';
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&sa), static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + 1 + n)) != 0 ||
      write(fd, &word, 1) != 1) {
    log(kj::str("could not tell the hop's sender that the deputy registered: ", strerror(errno)));
  }
  markOwn(fd, false);
  close(fd);
}

// --check: the start-up's steps that do not need the job (an event loop, shadowd's
// socket, an answer from shadowd), in a process of its own.
int checkStart(const char* socketPath) {
  shadow::hopFaultPoint("deputy-start", [](kj::String why) { shadow::fail(kj::mv(why)); });
  auto io = kj::setupAsyncIo();
  auto address = io.provider->getNetwork().parseAddress(kj::str("unix:", socketPath)).wait(io.waitScope);
  auto stream = address->connect().wait(io.waitScope);
  capnp::TwoPartyClient client(*stream);
  auto local = client.bootstrap().castAs<rpc::Local>();
  local.listRequest().send().wait(io.waitScope);
  return 0;
}

int run(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (strcmp(argv[i], "--check") == 0 && strcmp(argv[i + 1], "--socket") == 0 && i + 2 < argc) {
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { checkStart(argv[i + 2]); })) {
        fprintf(stderr, "%s\n", shadow::oneLine(e->getDescription()).cStr());
        return 1;
      }
      return 0;
    }
  }
  uint64_t jobId = 0;
  kj::Array<kj::byte> token;
  const char* socketPath = nullptr;
  uint64_t dropSignals = 0;
  int againFrom = -1, carriedFd = -1;
  const char* readyName = nullptr;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--ready") == 0) readyName = argv[i + 1];
    else if (strcmp(argv[i], "--job-id") == 0) jobId = strtoull(argv[i + 1], nullptr, 10);
    else if (strcmp(argv[i], "--socket") == 0) socketPath = argv[i + 1];
    else if (strcmp(argv[i], "--drop-signals") == 0) dropSignals = strtoull(argv[i + 1], nullptr, 16);
    else if (strcmp(argv[i], "--again-from") == 0) againFrom = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--carried-fd") == 0) carriedFd = atoi(argv[i + 1]);
  }
  if (const char* t = getenv(shadow::kTokenEnv)) token = shadow::unhex(t);
  // Back after a failed hop home (homecoming.h): who it is comes from the table the
  // deputy before the restart wrote, the answers it gave from the carried table; both
  // closed before the job's fds are counted.
  kj::Maybe<ComeBack> cameBack;
  kj::Array<kj::byte> carried;
  if (againFrom >= 0) {
    auto c = decodeComeBack(readWhole(againFrom));
    close(againFrom);
    if (carriedFd >= 0) {
      carried = readWhole(carriedFd);
      close(carriedFd);
    }
    jobId = c.jobId;
    token = kj::heapArray<kj::byte>(c.token);
    cameBack = kj::mv(c);
  }
  kj::String socketText = kj::str(socketPath != nullptr ? socketPath : "");
  KJ_IF_MAYBE(c, cameBack) { socketText = kj::str(c->socket); }
  socketPath = socketText.size() > 0 ? socketText.cStr() : nullptr;
  if (jobId == 0 || token.size() != 32 || socketPath == nullptr) return 127;

  // The inherited ITIMER_REAL belongs to the job, which took it along.
  struct itimerval off {};
  setitimer(ITIMER_REAL, &off, nullptr);

  // Signals that were pending at the freeze went with the job's image.
  takeSignals(dropSignals);
  startStopWatchThread();

  auto before = jobFds();
  KJ_IF_MAYBE(c, cameBack) {
    // Its ticket's listener is the deputy's own, not one of the job's fds.
    for (size_t i = 0; i < before.size(); ++i) {
      if (before[i] == c->linkFd) {
        for (size_t j = i; j + 1 < before.size(); ++j) before[j] = before[j + 1];
        before.removeLast();
        break;
      }
    }
  }
  planFdSpace();
  rsc::setChildLockFdPlacer(placeOwn);  // the lock keeper's socket among the deputy's fds
  openLog();
  auto placeholders = fillLowFds();
  auto io = kj::setupAsyncIo();
  // Home's shadowd may have died since it ran the sender (killed mid-hop): the job is
  // the deputy's all the same, which registers with the next one (below).
  kj::Maybe<kj::Own<kj::AsyncIoStream>> stream;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    auto address = io.provider->getNetwork().parseAddress(kj::str("unix:", socketPath)).wait(io.waitScope);
    stream = address->connect().wait(io.waitScope);
  })) {
    log(kj::str("job ", jobId, ": its home shadowd is not there (", e->getDescription(), ")"));
  }
  for (int fd : placeholders) close(fd);
  markOpenFdsOwn(before.begin(), static_cast<int>(before.size()));

  struct Ignore final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  } ignoreErrors;
  kj::TaskSet tasks(ignoreErrors);

  KeptRecord kept;
  auto impl = kj::heap<DeputyImpl>(io, io.unixEventPort, tasks, kept, jobId, token, socketPath);
  DeputyImpl& deputy = *impl;
  rpc::Deputy::Client self = kj::mv(impl);
  KJ_IF_MAYBE(c, cameBack) {
    if (c->record.size() > 0) {
      auto words = kj::heapArray<capnp::word>(c->record.size() / sizeof(capnp::word));
      memcpy(words.begin(), c->record.begin(), words.size() * sizeof(capnp::word));
      capnp::FlatArrayMessageReader reader(words);
      kept.message.setRoot(reader.getRoot<rpc::HomeRecord>());
      kept.kept = true;
    }
    deputy.comeBack(*c, carried);
    log(kj::str("job ", jobId, ": its restart at home failed; the deputy again"));
  }
  // Before the deputy registers, so its shadowd knows it (watchDeputy). Without one
  // the deputy serves the job all the same: group signals sent at home then reach the
  // job but not its children born away, as before.
  kj::Maybe<kj::Own<StandIn>> standIn;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { standIn = kj::heap<StandIn>(*io.lowLevelProvider, io.provider->getTimer()); })) {
    log(kj::str("no group stand-in (", e->getDescription(), "): group signals sent at home will not reach the job's children born away"));
  }
  const pid_t standInPid = standIn == nullptr ? 0 : KJ_ASSERT_NONNULL(standIn)->pid();
  kj::Own<ShadowdConnection> conn;
  rpc::Local::Client local(KJ_EXCEPTION(DISCONNECTED, "no home shadowd yet"));
  bool registered = false;
  KJ_IF_MAYBE(s, stream) {
    conn = kj::heap<ShadowdConnection>(kj::mv(*s), -1);
    local = conn->client.bootstrap().castAs<rpc::Local>();
    auto req = local.registerDeputyRequest();
    req.setJobId(jobId);
    req.setToken(token);
    req.setDeputy(self);
    req.setStandIn(standInPid);
    req.setLostAfterMs(deputy.ownLostAfterMs());
    if (cameBack != nullptr) {
      // Its shadowd still has the job (the hop home waits for this) or, restarted,
      // learns it back from the record.
      req.setAgain(true);
      if (kept.kept) req.setRecord(kept.message.getRoot<rpc::HomeRecord>().asReader());
    }
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { req.send().wait(io.waitScope); })) {
      log(kj::str("job ", jobId, ": its home shadowd did not take it: ", e->getDescription()));
    } else {
      registered = true;
      deputy.registeredWith(local);
      log(kj::str("job ", jobId, ": registered as its deputy; own fds from ", lowestOwn(), "; group stand-in: PID ", standInPid));
      if (readyName != nullptr) sayRegistered(readyName);
      readyName = nullptr;
    }
  }
  SignalForwarder signals(io.unixEventPort, tasks, local, jobId, token);
  KJ_IF_MAYBE(s, standIn) {
    deputy.keepsStandIn(**s);
    signals.tellGroupsBy(**s);
  }

  // Runs until the job ends (Deputy.ended exits the process). If shadowd goes away
  // the deputy stays, so the parent keeps waiting, and goes on serving the job over
  // its direct link (shadow/direct_link.h), which does not pass through shadowd; its
  // end comes over that link too. Without one the job cannot reach home any more.
  // Meanwhile it registers again with the shadowd that listens on the socket next,
  // with the record the last one kept here: that one learns the job back.
  // (Not registered at all yet: as with a restarted one, which learns the job from it.)
  for (;;) {
    if (registered) {
      conn->client.onDisconnect().wait(io.waitScope);
      log(kj::str("job ", jobId, ": the home shadowd went away; serving the direct link only until it is back"));
    }
    registered = true;
    for (;;) {
      conn = connectAgain(io, socketPath);
      local = conn->client.bootstrap().castAs<rpc::Local>();
      auto req = local.registerDeputyRequest();
      req.setJobId(jobId);
      req.setToken(token);
      req.setDeputy(self);
      req.setAgain(true);
      req.setStandIn(standInPid);
      req.setLostAfterMs(deputy.ownLostAfterMs());
      if (kept.kept) req.setRecord(kept.message.getRoot<rpc::HomeRecord>().asReader());
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { req.send().wait(io.waitScope); })) {
        log(kj::str("job ", jobId, ": the restarted shadowd did not take it back: ", e->getDescription()));
        io.provider->getTimer().afterDelay(5 * kj::SECONDS).wait(io.waitScope);
        continue;
      }
      break;
    }
    log(kj::str("job ", jobId, ": registered again with the restarted home shadowd"));
    if (readyName != nullptr) sayRegistered(readyName);  // its first registration
    readyName = nullptr;
    signals.reconnected(local);
    deputy.registeredWith(local);
  }
}

}  // namespace
}  // namespace mig::deputy

namespace {

// KJ's and Cap'n Proto's own lines (KJ_LOG, an RPC connection's trouble) go to MIG_LOG,
// never to stderr, which is the job's.
class LogToMigLog final : public kj::ExceptionCallback {
 public:
  void logMessage(kj::LogSeverity, const char* file, int line, int, kj::String&& text) override {
    mig::deputy::log(kj::str(file, ":", line, ": ", text));
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (getenv("MIG_DEPUTY_PROBE") != nullptr) return 0;  // the job's exec of it works (shim probeDeputy)
  mig::shadow::keepCallBuffers();
  LogToMigLog logToMigLog;
  try {
    return mig::deputy::run(argc, argv);
  } catch (const kj::Exception& e) {
    // Ends as an uncaught exception always ended it (SIGABRT), without the C++
    // runtime's line on the job's stderr.
    mig::deputy::log(kj::str("failed: ", e.getDescription()));
    abort();
  }
}
