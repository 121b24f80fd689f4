// `migctl send`: the sending half of one migration hop, run by shadowd on the host
// where the job runs (not meant to be typed). Logs in to the destination, asks it to
// take the job, freezes the job, streams its image there, and commits in two phases:
// once the destination says the job is restored up to "ready, not running" (done), the
// job is given up here (at home it becomes the job's deputy, on any other host it
// exits), and only then is the destination told to let it run (commit). Any failure
// before the job is given up resumes it here untouched; the destination kills its
// prepared copy when the sender goes away or does not commit in time.
// Prints one line "MIGRATED FREEZE_MS IMAGE_BYTES TRANSFER_MS RESTORE_MS MODE
// BYTES_BEFORE_FREEZE BYTES_DURING_FREEZE ROUNDS BYTES_AFTER_FREEZE SEND_MS" on success
// (MODE: pre-copy, post-copy or stop-and-copy; SEND_MS: from the first byte captured to
// the last sent, the transfer rate's time), then, when pre-copy was not possible, a line
// saying why.
//
// Post-copy (--mode postcopy, resources/network_page_source.h): frozen, the job's state
// and its small regions go; its big private anonymous regions stay here and the
// destination's page server fetches them (PageSource) once the job runs there. The job
// here stays frozen (and SIGSTOPped, so that nothing resumes it) while this process
// copies those pages; then it becomes the deputy, and this process serves the copy
// until the destination has every page. A destination lost before that ends the job
// (exit status 6, one line): it must not run here again, and cannot go on there.
//
// A process with descendants is refused before the destination is asked (moving a
// tree whole is not built yet, issue 12); --only moves the process alone.
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
#include "resources/memory.h"
#include "resources/network_page_source.h"
#include "resources/shared_memory.h"
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
#include <csignal>
#include <cstdio>
#include <cstring>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
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
// migctl send's exit status when a post-copy hop lost its destination after the commit,
// before it had every page: the job was ended (shadow/daemon.cc tells the user).
constexpr int kPostcopyLost = 6;

constexpr const char* kUsage =
    "usage: MIG_JOB_TOKEN=HEX migctl send PID --to HOST:PORT --key FILE --job-id ID --home HOST:PORT\n"
    "                   --vpid N [--command TEXT] [--network local|rebind] [--deputy PATH --shadowd-socket PATH]\n"
    "                   [--stall-timeout-ms N] [--mode precopy|postcopy|stop-and-copy] [--only]\n"
    "                   [--insecure-plaintext-links]\n"
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

double msSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// Post-copy (resources/network_page_source.h): the frozen job's pages that the image
// left out, served to the destination's page server until it has them all (finished).
// Right after the commit they are read from the frozen job; meanwhile they are copied
// here (copyAll), so that the job can become its deputy (its calls home wait for that)
// without waiting for the destination.
class PageSourceImpl final : public rpc::PageSource::Server {
 public:
  PageSourceImpl(pid_t pid, kj::Own<kj::PromiseFulfiller<void>> finished)
      : pid_(pid), memory_(pid, /*forMigration=*/true), finished_(kj::mv(finished)) {}
  ~PageSourceImpl() noexcept(false) {
    if (store_ != MAP_FAILED) munmap(store_, storeBytes_);
  }

  // The runs the destination will ask for (the image's postcopyPages), in address order.
  void setRuns(kj::ArrayPtr<const resources::PageSpan> runs) {
    uint64_t off = 0;
    for (auto& r : runs) {
      runs_.add(Run{r.addr, r.pages * 4096, off});
      off += r.pages * 4096;
    }
    storeBytes_ = off;
  }

  // Copies every run out of the frozen job, a piece at a time, serving requests between
  // the pieces. Throws if the copy cannot be made (the job then stays frozen here).
  void copyAll(kj::WaitScope& ws) {
    store_ = mmap(nullptr, storeBytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (store_ == MAP_FAILED) fail(kj::str("cannot keep a copy of the job's pages: ", strerror(errno)));
    constexpr uint64_t kPiece = 8u << 20;
    for (copiedRuns_ = 0; copiedRuns_ < runs_.size(); ++copiedRuns_) {
      const Run& r = runs_[copiedRuns_];
      for (copiedBytes_ = 0; copiedBytes_ < r.len;) {
        uint64_t n = std::min(kPiece, r.len - copiedBytes_);
        iovec local{static_cast<char*>(store_) + r.offset + copiedBytes_, n};
        iovec remote{reinterpret_cast<void*>(r.addr + copiedBytes_), n};
        ssize_t got = process_vm_readv(pid_, &local, 1, &remote, 1, 0);
        if (got <= 0) {
          // Unreadable through process_vm_readv (e.g. a page the kernel refuses): /proc.
          memory_.read(r.addr + copiedBytes_, local.iov_base, n);
          got = static_cast<ssize_t>(n);
        }
        copiedBytes_ += static_cast<uint64_t>(got);
        ws.poll();  // the destination's requests meanwhile
      }
    }
  }

  uint64_t sent() const { return sent_; }
  std::chrono::steady_clock::time_point lastRequest() const { return lastRequest_; }
  void touch() { lastRequest_ = std::chrono::steady_clock::now(); }

  kj::Promise<void> read(ReadContext context) override {
    auto p = context.getParams();
    lastRequest_ = std::chrono::steady_clock::now();
    KJ_REQUIRE(p.getLen() > 0 && p.getLen() <= resources::kMaxPageRequest, "bad page request", p.getLen());
    auto bytes = context.getResults().initBytes(static_cast<unsigned>(p.getLen()));
    uint64_t addr = p.getAddr(), done = 0;
    while (done < bytes.size()) {
      const uint64_t at = addr + done;
      size_t i = 0;
      while (i < runs_.size() && !(runs_[i].addr <= at && at < runs_[i].addr + runs_[i].len)) ++i;
      KJ_REQUIRE(i < runs_.size(), "a page request outside the post-copy pages", kj::hex(at));
      const Run& r = runs_[i];
      uint64_t n = std::min<uint64_t>(bytes.size() - done, r.addr + r.len - at);
      const uint64_t off = at - r.addr;
      if (store_ != MAP_FAILED && (i < copiedRuns_ || (i == copiedRuns_ && off + n <= copiedBytes_))) {
        memcpy(bytes.begin() + done, static_cast<char*>(store_) + r.offset + off, n);
      } else {
        memory_.read(at, bytes.begin() + done, n);  // still frozen: not copied yet
      }
      done += n;
    }
    sent_ += bytes.size();
    return kj::READY_NOW;
  }

  kj::Promise<void> finished(FinishedContext) override {
    finished_->fulfill();
    return kj::READY_NOW;
  }

 private:
  struct Run {
    uint64_t addr, len, offset;  // offset in store_
  };
  pid_t pid_;
  resources::ProcPageSource memory_;
  kj::Own<kj::PromiseFulfiller<void>> finished_;
  kj::Vector<Run> runs_;
  void* store_ = MAP_FAILED;
  uint64_t storeBytes_ = 0;
  size_t copiedRuns_ = 0;     // runs_[0, copiedRuns_) are in store_ whole,
  uint64_t copiedBytes_ = 0;  // and this much of runs_[copiedRuns_]
  uint64_t sent_ = 0;
  std::chrono::steady_clock::time_point lastRequest_ = std::chrono::steady_clock::now();
};

// The frozen job's image for a post-copy hop: everything but the pages of its big
// private anonymous regions, which postcopyPages lists. Returns those pages' bytes.
uint64_t capturePostcopy(migctl::ControlClient& ctl, image::ByteSink& out, resources::CaptureStats& stats,
                         PageSourceImpl& source) {
  control::Reply reply = ctl.freeze(kFreezeTimeoutSeconds);
  const pid_t pid = ctl.realPid();
  resources::ProcPageSource proc(pid, /*forMigration=*/true);
  if (reply.blockSize != sizeof(control::Block)) {
    fail(kj::str("process ", ctl.pid(), " runs an incompatible libmig (block size ", reply.blockSize, ")"));
  }
  auto block = kj::heap<control::Block>();
  proc.read(reply.blockAddr, block.get(), sizeof(control::Block));
  capnp::MallocMessageBuilder header;
  resources::fillJobHeader(header.initRoot<image::schema::Header>(), pid, block->vpid);
  image::ImageWriter w(out, header);
  resources::CaptureOptions options;
  options.forMigration = true;
  resources::WithoutSharedViews own(proc, nullptr, pid, nullptr);  // as a plain capture does
  resources::PostcopySource memory(own, pid);
  resources::captureProcessState(pid, *block, w, stats, options);
  resources::writeMemory(memory, w, stats, nullptr);
  resources::writePostcopyPages(w, memory.remote());
  source.setRuns(memory.remote());
  w.finish();
  stats.imageBytes = w.bytesWritten();
  return memory.remoteBytes();
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
      if (strcmp(mode, "precopy") != 0 && strcmp(mode, "stop-and-copy") != 0 && strcmp(mode, "postcopy") != 0) {
        fail(kj::str("--mode takes precopy, postcopy or stop-and-copy, not ", mode));
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
  auto sink = waitOrStall(receive.send(), timer, stallMs, stalled, ws).getSink();
  RpcSink out(kj::mv(sink), ws, timer, stallMs, kj::mv(stalled));

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

  // Post-copy: the destination takes the page source now (and may refuse, the job
  // untouched); it asks for pages only once the job runs there.
  const bool postcopy = mode != nullptr && strcmp(mode, "postcopy") == 0;
  auto finished = kj::newPromiseAndFulfiller<void>();
  uint64_t remoteBytes = 0;
  PageSourceImpl* pages = nullptr;          // kept alive by pageSource, whatever the destination does
  kj::Maybe<rpc::PageSource::Client> pageSource;
  if (postcopy) {
    auto req = out.sink().postcopyRequest();
    auto server = kj::heap<PageSourceImpl>(ctl->realPid(), kj::mv(finished.fulfiller));
    pages = server.get();
    rpc::PageSource::Client client = kj::mv(server);
    req.setSource(client);
    pageSource = kj::mv(client);
    waitOrStall(req.send(), timer, stallMs,
                kj::str("hop aborted: the destination ", to, " stopped answering; the job runs on ",
                        deputy != nullptr ? "at home" : "where it was"),
                ws);
  }

  resources::CaptureStats stats;
  // From the first byte captured: the rate shadowd learns for balance's cost of a move.
  auto sendStartedAt = std::chrono::steady_clock::now();
  uint64_t bytesBefore = 0;
  uint32_t rounds = 0;
  std::chrono::steady_clock::time_point frozenAt;
  if (postcopy) {
    frozenAt = std::chrono::steady_clock::now();
    remoteBytes = capturePostcopy(*ctl, out, stats, *pages);
  } else if (uffd >= 0) {
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
  double sendMs = msSince(sendStartedAt);
  hopFaultPoint("send-frozen", [](kj::String why) { fail(kj::mv(why)); });
  // A child forked between the look above and the freeze (a job that forks all the
  // while) would be left behind, losing its parent: the hop is aborted before its
  // commit, so the job resumes here whole and nothing of it runs there.
  if (!only) {
    auto late = childrenLeftBehind(ctl->realPid());
    if (late.size() > 0) fail(treeRefusal(vpid > 0 ? vpid : pid, late, deputy != nullptr));
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
  // Post-copy with pages still to send: the job stays here, frozen, as their copy, and
  // stopped (SIGSTOP), so that its shim cannot resume it if this process dies: it
  // becomes the deputy (or exits) once the destination has every page.
  const bool keepFrozen = postcopy && remoteBytes > 0;
  if (keepFrozen) {
    if (kill(ctl->realPid(), SIGSTOP) != 0) fail(kj::str("cannot stop the frozen job: ", strerror(errno)));
  } else if (deputy != nullptr) {
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
    if (keepFrozen) {
      // No destination confirmed and none may fetch the pages: the job ends here, as
      // the deputy would end it, and never runs twice.
      kill(ctl->realPid(), SIGKILL);
      fprintf(stderr, "no answer to the commit (%s); the job kept here for its pages was ended (SIGKILL)\n",
              e->getDescription().cStr());
    } else {
      fprintf(stderr, "no answer to the commit (%s)\n", e->getDescription().cStr());
    }
    return kCommittedUnconfirmed;
  }
  double freezeMs = msSince(frozenAt);
  uint64_t bytesAfter = 0;
  if (keepFrozen) {
    pages->touch();  // the stall timeout counts from the job's start there
    // The job runs there; its page server fetches what it touches and the rest. Its
    // calls home wait for the deputy: the pages are copied here first, then the job
    // here becomes the deputy (or ends) as in any hop. The command is read once it
    // goes on (SIGCONT).
    auto copied = kj::runCatchingExceptions([&]() { pages->copyAll(ws); });
    KJ_IF_MAYBE(e, copied) {
      // Without a copy the frozen job stays the pages' source: its deputy comes only
      // once the destination has them all.
      fprintf(stderr, "post-copy: %s; the job stays frozen here until %s has its pages\n",
              e->getDescription().cStr(), to);
    }
    auto letGo = [&]() {
      if (deputy != nullptr) {
        auto idText = kj::str(jobId), tokenEnv = kj::str(kTokenEnv, "=", hex(token)),
             dropText = kj::str(kj::hex(stats.pendingSignals));
        kj::StringPtr args[] = {deputy, "--job-id", idText, tokenEnv, "--socket", shadowdSocket,
                                "--drop-signals", dropText};
        ctl->becomeDeputy(args);
      } else {
        ctl->exitProcess();
      }
      kill(ctl->realPid(), SIGCONT);
    };
    bool gone = false;  // the job here is the deputy (or ended) by now
    if (copied == nullptr) {
      letGo();
      gone = true;
    }
    // A destination that asks for nothing for the stall timeout (a partition, a crash)
    // gets no more: the job cannot go on there without its pages and must not run here
    // again, so it is ended (by its page server there, and here: its deputy ends it as
    // killed, shadow/local_service.cc), and its parent sees it killed.
    kj::Function<kj::Promise<void>()> watchdog = [&]() -> kj::Promise<void> {
      return timer.afterDelay(1 * kj::SECONDS).then([&]() -> kj::Promise<void> {
        if (msSince(pages->lastRequest()) >= static_cast<double>(stallMs)) {
          fail(kj::str("no page request for ", stallMs / 1000.0, " s"));
        }
        return watchdog();
      });
    };
    auto lost = kj::runCatchingExceptions([&]() { finished.promise.exclusiveJoin(watchdog()).wait(ws); });
    bytesAfter = pages->sent();
    ws.poll();  // the answer to finished goes out before this process ends
    KJ_IF_MAYBE(e, lost) {
      if (!gone) kill(ctl->realPid(), SIGKILL);
      fprintf(stderr,
              "post-copy: lost the destination %s with %.1f MiB of the job's memory not sent (%s): it cannot go on "
              "there and must not run here twice, so it was ended (as if by SIGKILL)\n",
              to, static_cast<double>(remoteBytes > bytesAfter ? remoteBytes - bytesAfter : 0) / (1 << 20),
              e->getDescription().cStr());
      return kPostcopyLost;
    }
    if (!gone) letGo();
  }
  printf("MIGRATED %.3f %llu %.3f %.3f %s %llu %llu %u %llu %.3f\n", freezeMs,
         static_cast<unsigned long long>(out.total() + bytesAfter), transferMs, restoreMs,
         postcopy ? "post-copy" : uffd >= 0 ? "pre-copy" : "stop-and-copy", static_cast<unsigned long long>(bytesBefore),
         static_cast<unsigned long long>(out.total() - bytesBefore), rounds, static_cast<unsigned long long>(bytesAfter),
         sendMs);
  if (uffd < 0 && mode == nullptr) printf("%s\n", whyNot.cStr());
  return 0;
}

}  // namespace mig::shadow
