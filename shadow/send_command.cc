// `migctl send`: the sending half of one migration hop, run by shadowd on the host
// where the job runs (not meant to be typed). Logs in to the destination, asks it to
// take the job, freezes the job, streams its image there, and commits in two phases:
// once the destination says the job is restored up to "ready, not running" (done), the
// job is given up here (at home it becomes the job's deputy, on any other host it
// exits), and only then is the destination told to let it run (commit). Any failure
// before the job is given up resumes it here untouched; the destination kills its
// prepared copy when the sender goes away or does not commit in time.
// Prints one line "MIGRATED FREEZE_MS IMAGE_BYTES TRANSFER_MS RESTORE_MS MODE
// BYTES_BEFORE_FREEZE BYTES_DURING_FREEZE ROUNDS" on success (MODE: pre-copy or
// stop-and-copy), then, when pre-copy was not possible, a line saying why.
//
// A process with descendants is refused before the destination is asked (moving a
// tree whole is not built yet, issue 12); --only moves the process alone. A hop to
// the job's home (the destination says so) restores the job into its deputy
// (deputy/homecoming.h); children born away that still run are refused then even
// with --only.
//
// Pre-copy (the default where the job's writes can be tracked, resources/precopy.h):
// the image's pages go in rounds while the job runs, then the freeze sends the rest.
//
// It is shadowd's step, so it lives here, but it is built into migctl: it freezes and
// captures the job with the code `migctl checkpoint` uses (migctl/freeze_capture.h),
// and shadowd runs the migctl it already finds (MIG_MIGCTL, or beside it).
#include "shadow/send_command.h"

#include "image/byte_io.h"
#include "image/image_error.h"
#include "migctl/control_client.h"
#include "image/host_facts.h"
#include "migctl/freeze_capture.h"
#include "resources/lazy_pages.h"
#include "resources/page_source.h"
#include "resources/precopy.h"
#include "resources/proc_file.h"
#include "resources/process_tree.h"
#include "resources/sysv_ipc.h"
#include "shadow/hex.h"
#include "shadow/hop_fault.h"
#include "shadow/network_policy.h"
#include "shadow/peer_login.h"

#include <kj/async-io.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>
#include <deque>
#include <vector>

namespace mig::shadow {
namespace {

using image::fail;

constexpr size_t kChunk = 1 << 20;
constexpr size_t kInFlight = 16;
constexpr int kFreezeTimeoutSeconds = 30;
// The destination's restore up to "ready" has its own limit (node_service.cc,
// kRestoreTimeoutMs); the sender waits that long on top of the stall timeout.
constexpr uint64_t kPrepareAllowanceMs = 120000;
// migctl send's exit status when the job was given up here but the destination did
// not confirm that it runs (shadow/daemon.cc tells the user; docs/design.md).
constexpr int kCommittedUnconfirmed = 5;

constexpr const char* kUsage =
    "usage: MIG_JOB_TOKEN=HEX migctl send PID --to HOST:PORT --key FILE --job-id ID --home HOST:PORT\n"
    "                   --vpid N [--command TEXT] [--network local|rebind] [--deputy PATH --shadowd-socket PATH]\n"
    "                   [--stall-timeout-ms N] [--mode precopy|stop-and-copy] [--only] [--insecure-plaintext-links]\n"
    "\n"
    "One hop of a migration, as shadowd runs it; use `migctl migrate` instead.\n";

// Waits for `p`, but fails with `why` if it does not resolve within `ms`: a
// destination that stops answering (a partition) must not keep the job frozen.
template <typename T>
T waitOrStall(kj::Promise<T> p, kj::Timer& timer, uint64_t ms, kj::StringPtr why, kj::WaitScope& ws) {
  return p.exclusiveJoin(timer.afterDelay(ms * kj::MILLISECONDS).then([why]() -> T { fail(kj::str(why)); }))
      .wait(ws);
}

// The image as RPC writes to the destination's ImageSink, kInFlight of them
// outstanding at a time: enough to keep the link busy, bounded memory. A write not
// taken within the stall timeout cancels the hop.
class RpcSink final : public image::ByteSink {
 public:
  RpcSink(rpc::ImageSink::Client sink, kj::WaitScope& ws, kj::Timer& timer, uint64_t stallMs, kj::String stalled)
      : sink_(kj::mv(sink)), ws_(ws), timer_(timer), stallMs_(stallMs), stalled_(kj::mv(stalled)) {
    buf_.reserve(kChunk);
  }

  void write(const void* data, size_t len) override {
    auto* p = static_cast<const kj::byte*>(data);
    while (len > 0) {
      size_t n = std::min(len, kChunk - buf_.size());
      buf_.insert(buf_.end(), p, p + n);
      p += n;
      len -= n;
      if (buf_.size() == kChunk) flush();
    }
  }

  // Sends what is buffered; with `drain`, also waits until every write was taken.
  void flush(bool drain = false) {
    if (!buf_.empty()) {
      auto req = sink_.writeRequest();
      req.setBytes(kj::arrayPtr(buf_.data(), buf_.size()));
      inFlight_.push_back(req.send().ignoreResult());
      total_ += buf_.size();
      buf_.clear();
    }
    while (inFlight_.size() > (drain ? 0 : kInFlight)) {
      auto next = kj::mv(inFlight_.front());
      inFlight_.pop_front();
      waitOrStall(kj::mv(next), timer_, stallMs_, stalled_, ws_);
    }
  }

  uint64_t total() const { return total_; }
  rpc::ImageSink::Client& sink() { return sink_; }

 private:
  rpc::ImageSink::Client sink_;
  kj::WaitScope& ws_;
  kj::Timer& timer_;
  uint64_t stallMs_;
  kj::String stalled_;
  std::vector<kj::byte> buf_;
  std::deque<kj::Promise<void>> inFlight_;
  uint64_t total_ = 0;
};

// The same file as this program (both /proc/PID/exe links name one inode)?
bool sameProgramAsMe(pid_t pid) {
  struct stat mine {}, theirs {};
  return stat("/proc/self/exe", &mine) == 0 && stat(kj::str("/proc/", pid, "/exe").cStr(), &theirs) == 0 &&
         mine.st_dev == theirs.st_dev && mine.st_ino == theirs.st_ino;
}

// The descendants of the job's process `realPid` that would be left behind if it
// moved alone. Not mig's own helper: a program that moves itself (mig.h) runs
// `migctl migrate` as its child, and that child is the one asking for this move.
kj::Vector<resources::TreeProcess> childrenLeftBehind(pid_t realPid) {
  auto tree = resources::listTree(realPid);  // parents before their children
  kj::Vector<pid_t> helpers;
  kj::Vector<resources::TreeProcess> left;
  for (size_t i = 1; i < tree.size(); ++i) {
    const auto& p = tree[i];
    bool helper = p.ppid == realPid && !p.zombie && (p.command == "migctl" || sameProgramAsMe(p.pid));
    for (pid_t h : helpers) helper |= p.ppid == h;  // and whatever it started
    if (helper) helpers.add(p.pid);
    else left.add(p);
  }
  return left;
}

// The refusal's line: which processes, why, what the user can do.
kj::String treeRefusal(long vpid, const kj::Vector<resources::TreeProcess>& left, bool atHome) {
  kj::Vector<kj::String> names;
  for (size_t i = 0; i < left.size() && i < 4; ++i) {
    names.add(kj::str(left[i].command.c_str(), left[i].zombie ? " (ended, not yet waited for)" : ""));
  }
  if (left.size() > 4) names.add(kj::str("..."));
  return kj::str("cannot move PID ", vpid, ": it has ", left.size(), left.size() == 1 ? " descendant (" : " descendants (",
                 kj::strArray(names, ", "), ") and moving a process tree whole is not built yet (issue 12); "
                 "nothing was frozen, the job runs on ", atHome ? "at home" : "where it was",
                 "; --only moves process ", vpid, " alone and leaves its children ",
                 atHome ? "at home (its waits for them then go home)" : "on this host (they lose their parent)");
}

// The children that still run (a zombie's status is lost with --only, as when the
// job leaves any host without it).
kj::Vector<resources::TreeProcess> liveOnly(kj::Vector<resources::TreeProcess> all) {
  kj::Vector<resources::TreeProcess> live;
  for (auto& p : all) {
    if (!p.zombie) live.add(kj::mv(p));
  }
  return live;
}

// A hop back home refused for the job's children born away: which, and why.
kj::String homecomingRefusal(long vpid, const kj::Vector<resources::TreeProcess>& left) {
  kj::Vector<kj::String> names;
  for (size_t i = 0; i < left.size() && i < 4; ++i) {
    names.add(kj::str(left[i].command.c_str(), left[i].zombie ? " (ended, not yet waited for)" : ""));
  }
  if (left.size() > 4) names.add(kj::str("..."));
  return kj::str("cannot move PID ", vpid, " home: it has ", left.size(),
                 left.size() == 1 ? " child (" : " children (", kj::strArray(names, ", "),
                 ") born away from home, which cannot come home with it yet (issue 12); nothing was frozen, "
                 "the job runs on where it was; move it home once they have ended and been waited for");
}

double msSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int sendCommand(int argc, char** argv) {
  const char *to = nullptr, *keyPath = nullptr, *home = nullptr, *command = "", *deputy = nullptr,
             *shadowdSocket = nullptr;
  uint64_t jobId = 0, stallMs = 30000;
  long pid = 0, vpid = 0;
  auto network = rpc::NetworkPolicy::HOME;
  auto linkMode = LinkMode::ENCRYPTED;
  const char* mode = nullptr;  // default: pre-copy where possible
  bool only = false;           // the process alone, even with children
  for (int i = 0; i < argc; ++i) {
    auto is = [&](const char* name) { return strcmp(argv[i], name) == 0 && i + 1 < argc; };
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(kUsage, stdout);
      return 0;
    } else if (is("--to")) to = argv[++i];
    else if (is("--key")) keyPath = argv[++i];
    else if (is("--job-id")) jobId = strtoull(argv[++i], nullptr, 10);
    else if (is("--home")) home = argv[++i];
    else if (is("--vpid")) vpid = strtol(argv[++i], nullptr, 10);
    else if (is("--command")) command = argv[++i];
    else if (is("--deputy")) deputy = argv[++i];
    else if (is("--shadowd-socket")) shadowdSocket = argv[++i];
    else if (strcmp(argv[i], "--insecure-plaintext-links") == 0) linkMode = LinkMode::PLAINTEXT;
    else if (strcmp(argv[i], "--only") == 0) only = true;
    else if (is("--stall-timeout-ms")) stallMs = strtoull(argv[++i], nullptr, 10);
    else if (is("--mode")) {
      mode = argv[++i];
      if (strcmp(mode, "precopy") != 0 && strcmp(mode, "stop-and-copy") != 0) {
        fail(kj::str("--mode takes precopy or stop-and-copy, not ", mode));
      }
    }
    else if (is("--network")) {
      const char* v = argv[++i];
      KJ_IF_MAYBE(p, networkFromWord(v)) { network = *p; }
      else fail(kj::str("--network takes local or rebind, not ", v));
    }
    else if (argv[i][0] != '-' && pid == 0) pid = strtol(argv[i], nullptr, 10);
    else {
      fprintf(stderr, "migctl send: unexpected argument '%s'\n%s", argv[i], kUsage);
      return 2;
    }
  }
  if (pid <= 0 || to == nullptr || keyPath == nullptr || jobId == 0 || home == nullptr || stallMs == 0 ||
      (deputy != nullptr && shadowdSocket == nullptr)) {
    fprintf(stderr, "migctl send: missing arguments\n%s", kUsage);
    return 2;
  }
  if (deputy != nullptr && access(deputy, X_OK) != 0) fail(kj::str("the deputy program ", deputy, " is missing"));
  auto token = tokenFromEnv();
  auto key = ClusterKey::load(keyPath);

  auto io = kj::setupAsyncIo();
  auto& ws = io.waitScope;
  auto ctl = kj::heap<migctl::ControlClient>(static_cast<pid_t>(pid));  // a process not under mig: said first
  // A file mapped shared and writable cannot follow the job (its writes would reach a
  // copy, not the file): refused before anything happens to the job. Read-only shared
  // and private mappings of home files travel as private memory.
  KJ_IF_MAYBE(file, resources::sharedWritableFileMapping(static_cast<pid_t>(pid))) {
    fail(kj::str("cannot move PID ", pid, ": it maps ", *file,
                 " shared and writable, and its writes could not reach that file from another host; the job runs on ",
                 deputy != nullptr ? "at home" : "where it was"));
  }
  // The job is the process and its descendants: one with children is refused, before
  // the destination is asked, until trees move whole; --only keeps the move of one
  // process (its children stay here).
  if (!only) {
    auto left = childrenLeftBehind(ctl->realPid());
    if (left.size() > 0) fail(treeRefusal(vpid > 0 ? vpid : pid, left, deputy != nullptr));
  }
  // System V objects are the kernel's of this host, named by ids the job holds: they
  // cannot follow it yet (resources/sysv_ipc.h). Refused now, not after a move whose
  // first semop would fail.
  const pid_t self = ctl->realPid();
  KJ_IF_MAYBE(object, resources::firstSysvObject(kj::arrayPtr(&self, 1))) {
    fail(kj::str("cannot move PID ", pid, ": it uses the ", *object,
                 ", which cannot follow it to another host (System V IPC stays with this host's kernel); the job runs on ",
                 deputy != nullptr ? "at home" : "where it was"));
  }
  auto link = loginToPeer(io, key, linkMode, to).wait(ws);
  hopFaultPoint("send-login", [](kj::String why) { fail(kj::mv(why)); });

  // The destination may refuse before anything happens to the job.
  auto receive = link->node.receiveRequest();
  auto ticket = receive.initTicket();
  ticket.setJobId(jobId);
  ticket.setNetwork(network);
  ticket.setToken(token);
  ticket.setHome(home);
  ticket.setVpid(static_cast<int32_t>(vpid > 0 ? vpid : pid));
  ticket.setCommand(command);
  // The one line the user sees when the destination stops answering (the job is
  // resumed here when this process ends: its shim sees the control connection close).
  auto stalled = kj::str("hop aborted: the destination ", to, " stopped answering (no progress for ",
                         stallMs / 1000.0, " s); the job runs on ", deputy != nullptr ? "at home" : "where it was");
  auto& timer = io.provider->getTimer();
  auto received = waitOrStall(receive.send(), timer, stallMs, stalled, ws);
  const bool homecoming = received.getHome();
  RpcSink out(received.getSink(), ws, timer, stallMs, kj::mv(stalled));
  // Back home the job becomes its deputy's process again (deputy/homecoming.h): children
  // it made away from home (their virtual PIDs are home's, their processes here) cannot
  // come along yet, not even with --only: refused before anything is frozen.
  // (Without --only every child was refused above, and is again after the freeze.)
  if (homecoming && only) {
    auto left = liveOnly(childrenLeftBehind(ctl->realPid()));
    if (left.size() > 0) fail(homecomingRefusal(vpid > 0 ? vpid : pid, left));
  }

  // Write tracking for pre-copy: a userfaultfd made by the job's shim. The shim ends
  // that control connection after handing it over; the freeze takes a new one.
  int uffd = -1;
  kj::String whyNot;
  // A job restarted with --lazy whose page server still fills it: its pages first
  // (pre-copy could not register its memory, and a capture would miss them).
  resources::waitForLazyPages(ctl->realPid());
  if (mode == nullptr || strcmp(mode, "precopy") == 0) {
    uffd = ctl->trackWrites(whyNot);
    if (uffd < 0 && mode != nullptr) fail(kj::str("pre-copy is not possible: ", whyNot));
    ctl = nullptr;
    ctl = kj::heap<migctl::ControlClient>(static_cast<pid_t>(pid));
  }

  resources::CaptureStats stats;
  uint64_t bytesBefore = 0;
  uint32_t rounds = 0;
  std::chrono::steady_clock::time_point frozenAt;
  if (uffd >= 0) {
    pid_t realPid = ctl->realPid();
    capnp::MallocMessageBuilder header;
    resources::fillJobHeader(header.initRoot<image::schema::Header>(), realPid, static_cast<int32_t>(vpid > 0 ? vpid : pid));
    image::ImageWriter w(out, header);
    resources::ProcPageSource memory(realPid, /*forMigration=*/true);
    resources::Precopy precopy(realPid, uffd, memory);
    precopy.runRounds(w, resources::PrecopyRule{}, [&]() { out.flush(); });
    out.flush(/*drain=*/true);  // the link is empty when the job stops
    bytesBefore = out.total();
    rounds = precopy.stats().rounds;
    frozenAt = std::chrono::steady_clock::now();
    stats = migctl::freezeAndFinish(*ctl, kFreezeTimeoutSeconds, memory, precopy, w);
  } else {
    frozenAt = std::chrono::steady_clock::now();
    stats = migctl::freezeAndCapture(*ctl, kFreezeTimeoutSeconds, /*forMigration=*/true, out);
  }
  out.flush(/*drain=*/true);
  double transferMs = msSince(frozenAt);
  hopFaultPoint("send-frozen", [](kj::String why) { fail(kj::mv(why)); });
  // A child forked between the look above and the freeze (a job that forks all the
  // while) would be left behind, losing its parent: the hop is aborted before its
  // commit, so the job resumes here whole and nothing of it runs there.
  if (!only) {
    auto late = childrenLeftBehind(ctl->realPid());
    if (late.size() > 0) fail(treeRefusal(vpid > 0 ? vpid : pid, late, deputy != nullptr));
  } else if (homecoming) {
    auto late = liveOnly(childrenLeftBehind(ctl->realPid()));
    if (late.size() > 0) fail(homecomingRefusal(vpid > 0 ? vpid : pid, late));
  }

  // Phase one: the destination restores up to "ready, not running". A partition here
  // aborts the hop like one during the transfer: the job resumes here.
  auto prepared = waitOrStall(out.sink().doneRequest().send(), timer, stallMs + kPrepareAllowanceMs,
                              kj::str("hop aborted: the destination ", to, " stopped answering while restoring (",
                                      (stallMs + kPrepareAllowanceMs) / 1000.0, " s); the job runs on ",
                                      deputy != nullptr ? "at home" : "where it was"),
                              ws);
  double restoreMs = prepared.getRestoreMs();
  hopFaultPoint("send-prepared", [](kj::String why) { fail(kj::mv(why)); });

  // The commit point: the job is given up here. From now on it may run only there.
  if (deputy != nullptr) {
    // The token goes into the deputy's environment (see shim/checkpoint.cc, execDeputy).
    auto idText = kj::str(jobId), tokenEnv = kj::str(kTokenEnv, "=", hex(token)),
         dropText = kj::str(kj::hex(stats.pendingSignals));
    kj::StringPtr args[] = {deputy, "--job-id", idText, tokenEnv, "--socket", shadowdSocket,
                            "--drop-signals", dropText};
    ctl->becomeDeputy(args);
  } else {
    ctl->exitProcess();
  }
  // Said at once: if this process dies now, shadowd still knows the job left here.
  printf("COMMITTED\n");
  fflush(stdout);
  hopFaultPoint("send-committed", [](kj::String why) { fail(kj::mv(why)); });

  // Phase two: the destination lets the job run. If it does not confirm, the job was
  // given up here all the same: said as such, never as a resumed job.
  auto committed = kj::runCatchingExceptions([&]() {
    auto r = waitOrStall(out.sink().commitRequest().send(), timer, stallMs + kPrepareAllowanceMs,
                         kj::str("no answer within ", (stallMs + kPrepareAllowanceMs) / 1000.0, " s"), ws);
    restoreMs += r.getRestoreMs();
  });
  KJ_IF_MAYBE(e, committed) {
    fprintf(stderr, "no answer to the commit (%s)\n", e->getDescription().cStr());
    return kCommittedUnconfirmed;
  }
  double freezeMs = msSince(frozenAt);
  printf("MIGRATED %.3f %llu %.3f %.3f %s %llu %llu %u\n", freezeMs, static_cast<unsigned long long>(out.total()),
         transferMs, restoreMs, uffd >= 0 ? "pre-copy" : "stop-and-copy", static_cast<unsigned long long>(bytesBefore),
         static_cast<unsigned long long>(out.total() - bytesBefore), rounds);
  if (uffd < 0 && mode == nullptr) printf("%s\n", whyNot.cStr());
  return 0;
}

}  // namespace mig::shadow
