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
// until the destination has every page. A broken link meanwhile is not the end: with no
// page asked for a while, this process logs in to the destination again and hands it
// the page source anew (Node.resumePages). A destination that asks for nothing for the
// stall timeout ends the job (exit status 6, one line): it must not run here again, and
// cannot go on there.
//
// A process with descendants moves whole from its home (issue 12, docs/design.md
// "Moving a process tree"): shadowd gives every live descendant a job record of its
// own (MIG_TREE_MEMBERS) and each member makes one hop of its own over the same link,
// all frozen before any is given up, all given up (each becomes its own deputy) only
// once every one is ready there. Away from home the children of a job's process, or of
// a tree's member (all born here), come along in its image on a stop-and-copy hop to
// another host (BornAway), after their moment to end (shadow/settle_children.h: a job
// forking short children is moved between two of them); --only moves the process
// alone. A hop to the job's
// home (the destination says so) restores the job into its deputy
// (deputy/homecoming.h), a tree's every member into its own, all or none
// (shadow/tree_homecoming.h, shadow/home_gate.h), their children born here with them,
// stop-and-copy; with --only such children that still run refuse the hop.
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
#include "resources/dirty_pages.h"
#include "resources/network_page_source.h"
#include "resources/shared_memory.h"
#include "resources/page_source.h"
#include "resources/precopy.h"
#include "resources/proc_file.h"
#include "resources/shared_memory.h"
#include "resources/process_tree.h"
#include "resources/sysv_ipc.h"
#include "shadow/deputy_start.h"
#include "shadow/hex.h"
#include "shadow/hop_fault.h"
#include "shadow/hop_times.h"
#include "shadow/page_copy.h"
#include "shadow/page_server.h"
#include "shadow/settle_children.h"
#include "shadow/tree_homecoming.h"
#include "shadow/tree_members.h"
#include "shadow/network_policy.h"
#include "shadow/peer_login.h"
#include "shim/forward/child_pids.h"

#include <kj/async-io.h>
#include <kj/io.h>
#include <kj/thread.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <deque>
#include <dirent.h>
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
// How long the deputy's trial start, the exec at the commit and its registration with
// shadowd may take (deputy_start.h); they take milliseconds.
constexpr int kDeputyStartMs = 10000;

// The deputy's program as the job's process execs it. MIG_FAULT=hop:deputy-exec:error
// names one that is not there: the exec really fails (crash: see the exec at the commit).
kj::String deputyProgram(kj::StringPtr deputy) {
  const HopFault& f = hopFault();
  const bool injected = f.step == "deputy-exec" && f.action == HopFaultAction::ERROR;
  return injected ? kj::str(deputy, ".injected-fault") : kj::str(deputy);
}

// A tree member's and a post-copy job's deputy start after the commit, when the job
// can no longer go on here: their exec is proved first, from the job's process while
// it runs (ControlClient::probeDeputy: its credentials, root, limits, environment).
// "" if it would start, else why not. The job's control connection is spent after it.
kj::String whyDeputyWouldNotStart(migctl::ControlClient& ctl, kj::StringPtr program, uint64_t jobId,
                                  kj::ArrayPtr<const kj::byte> token, kj::StringPtr shadowdSocket) {
  auto idText = kj::str(jobId), tokenEnv = kj::str(kTokenEnv, "=", hex(token));
  kj::StringPtr args[] = {program, "--job-id", idText, tokenEnv, "--socket", shadowdSocket};
  int err = ctl.probeDeputy(args, kDeputyStartMs);
  return err == 0 ? kj::str("") : kj::str("exec of ", program, ": ", strerror(err));
}

constexpr const char* kUsage =
    "usage: MIG_JOB_TOKEN=HEX migctl send PID --to HOST:PORT --key FILE --job-id ID --home HOST:PORT\n"
    "                   --vpid N [--command TEXT] [--network local|rebind] [--deputy PATH --shadowd-socket PATH]\n"
    "                   [--stall-timeout-ms N] [--mode precopy|postcopy|stop-and-copy] [--pages-file PATH]\n"
    "                   [--only]\n"
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
// taken within the stall timeout cancels the hop. The bytes are copied once, into one
// of kInFlight + 1 buffers made once per hop, which each request's message references
// (Orphanage::referenceExternalData) until the destination answers it: a message
// segment of its own per request was zeroed by Cap'n Proto and then overwritten, in
// fresh memory each time (perf of a 512 MiB hop: the sender's largest cost after the
// cipher).
class RpcSink final : public image::ByteSink {
 public:
  RpcSink(rpc::ImageSink::Client sink, kj::WaitScope& ws, kj::Timer& timer, uint64_t stallMs, kj::String stalled)
      : sink_(kj::mv(sink)), ws_(ws), timer_(timer), stallMs_(stallMs), stalled_(kj::mv(stalled)) {}
  ~RpcSink() noexcept(false) {
    // A hop given up with writes unanswered: their messages may still wait to be
    // written by the connection, which outlives this sink. Their buffers are left
    // allocated (at most kInFlight MiB, until this one-hop process exits) rather than
    // freed under them.
    static std::vector<kj::Array<kj::byte>> unanswered;  // reachable: not a leak to a sanitizer
    for (auto& w : inFlight_) {
      if (w.buffer != nullptr) unanswered.push_back(kj::mv(w.buffer));
    }
  }

  void write(const void* data, size_t len) override {
    auto* p = static_cast<const kj::byte*>(data);
    while (len > 0) {
      if (buffer_ == nullptr) {
        if (free_.empty()) {
          buffer_ = kj::heapArray<kj::byte>(kChunk);
        } else {
          buffer_ = kj::mv(free_.back());
          free_.removeLast();
        }
      }
      size_t n = std::min(len, kChunk - used_);
      memcpy(buffer_.begin() + used_, p, n);
      used_ += n;
      p += n;
      len -= n;
      if (used_ == kChunk) flush();
    }
  }

  // Sends what is buffered; with `drain`, also waits until every write was taken.
  void flush(bool drain = false) {
    if (used_ > 0) {
      // The message shows the bytes up to the next word boundary: no stale bytes there.
      memset(buffer_.begin() + used_, 0, std::min(kChunk - used_, (8 - used_ % 8) % 8));
      auto req = sink_.writeRequest();
      req.adoptBytes(capnp::Orphanage::getForMessageContaining(rpc::ImageSink::WriteParams::Builder(req))
                         .referenceExternalData(capnp::Data::Reader(buffer_.begin(), used_)));
      inFlight_.push_back(Write{req.send().ignoreResult(), kj::mv(buffer_)});
      total_ += used_;
      used_ = 0;
    }
    while (inFlight_.size() > (drain ? 0 : kInFlight)) {
      Write next = kj::mv(inFlight_.front());
      inFlight_.pop_front();
      waitOrStall(kj::mv(next.answered), timer_, stallMs_, stalled_, ws_);
      // Answered: its message is written and gone, the buffer is free again.
      if (next.buffer != nullptr) free_.add(kj::mv(next.buffer));
    }
  }

  // An empty write: the destination starts the job's restart now (it does at an
  // image's first bytes), so that its start is not inside a stop-and-copy freeze; it
  // answers once the restart runs (bounded there).
  void announce() { inFlight_.push_back(Write{sink_.writeRequest().send().ignoreResult(), nullptr}); }

  uint64_t total() const { return total_; }
  rpc::ImageSink::Client& sink() { return sink_; }

 private:
  rpc::ImageSink::Client sink_;
  kj::WaitScope& ws_;
  kj::Timer& timer_;
  uint64_t stallMs_;
  kj::String stalled_;
  struct Write {
    kj::Promise<void> answered;
    kj::Array<kj::byte> buffer;  // what its message references (none: an announce)
  };
  kj::Array<kj::byte> buffer_;  // being filled, kChunk long; used_ bytes so far
  size_t used_ = 0;
  kj::Vector<kj::Array<kj::byte>> free_;
  std::deque<Write> inFlight_;
  uint64_t total_ = 0;
};

// The descendants of the job's process `realPid` that would be left behind if it
// moved alone. Not mig's own helper: a program that moves itself (mig.h) runs
// `migctl migrate` as its child, and that child is the one asking for this move.
// frozen: every live member is frozen (the quick look, resources/process_tree.h).
kj::Vector<resources::TreeProcess> childrenLeftBehind(pid_t realPid, bool frozen = false) {
  return resources::jobDescendants(realPid, "/proc/self/exe", frozen);
}

// At home, a child born away that came home with the job (step 3 of "Children born
// away": forked there with its PID of the host it left) still goes by its virtual PID,
// which only the job's shim and its own know; its shim answers under that name too
// (control_thread.cc, the restored process's alias). Neither a tree's member nor left
// here could it keep that PID on the next hop: not built, refused before anything is
// frozen. Ended and not waited for (a zombie, no shim to answer) it is named by the
// job's own table of its children born away (`table`, kOpBornAwayChildren): left
// behind as any zombie, the job's wait away would look for it there and never get its
// status.
const resources::TreeProcess* bornAwayCameHome(const kj::Vector<resources::TreeProcess>& children,
                                               kj::ArrayPtr<const pid_t> table) {
  for (auto& p : children) {
    if (p.zombie) {
      for (pid_t real : table) {
        if (real == p.pid) return &p;
      }
      continue;
    }
    kj::Maybe<pid_t> real;
    kj::runCatchingExceptions([&]() { real = migctl::ControlClient(forward::kAwayPidBase + p.pid).realPid(); });
    KJ_IF_MAYBE(r, real) {
      if (*r == p.pid) return &p;
    }
  }
  return nullptr;
}

// Those a single process's move would lose: at home a zombie child stays, the
// deputy's to reap when the job waits for it there (its wait goes home).
kj::Vector<resources::TreeProcess> lostIfAlone(pid_t realPid, bool atHome) {
  kj::Vector<resources::TreeProcess> out;
  for (auto& p : childrenLeftBehind(realPid)) {
    if (!(atHome && p.zombie)) out.add(kj::mv(p));
  }
  return out;
}

// The look before a move, given its moment (settle_children.h): a child that ends and
// is waited for within about a second is no reason to refuse.
template <typename Look>
auto settledLook(Look&& look) {
  return settleChildren(kj::fwd<Look>(look), []() { usleep(kSettlePauseMs * 1000); });
}

// At home, the members of shadowd's look that still exist, after their moment to
// settle (settle_children.h): a short child it listed (a shell's `$(...)`, forked
// again and again by a loop with no pause) has often ended and been reaped by now, and
// another may run. A member that no longer exists (not even a zombie) is simply not
// part of the tree: nothing of it moves (shadowd drops its record, local_service.cc).
// Settled means no live descendant without a record and no member a zombie; one that
// stays so is left for sendTree's check to refuse, as is a member that still exists.
template <typename Member>
kj::Vector<Member> presentMembers(pid_t rootReal, kj::Vector<Member> members) {
  settledLook([&]() {
    kj::Vector<resources::TreeProcess> unsettled;
    for (auto& p : childrenLeftBehind(rootReal)) {
      bool known = false;
      for (auto& m : members) known |= m.pid == p.pid;
      if (known == p.zombie) unsettled.add(resources::TreeProcess(p));
    }
    return unsettled;
  });
  kj::Vector<Member> present;
  for (auto& m : members) {
    if (!resources::processExists(m.pid)) continue;
    // One that cannot be reached is often a short child on its way out (its shim's
    // control already closed): its moment to end, then it is left out too.
    auto reached = kj::runCatchingExceptions([&]() { m.ctl = kj::heap<migctl::ControlClient>(m.pid); });
    if (reached != nullptr) {
      struct Pid {
        pid_t pid;
      };
      auto still = settledLook([&]() {
        kj::Vector<Pid> left;
        if (resources::processExists(m.pid)) left.add(Pid{m.pid});
        return left;
      });
      if (still.left.size() == 0) continue;
    }
    present.add(kj::mv(m));
  }
  return present;
}

// The refusal's line at home, where shadowd's look made a record for every live
// descendant: a process born since has none (away: awayChildrenRefusal).
kj::String treeRefusal(long vpid, const kj::Vector<resources::TreeProcess>& left) {
  return kj::str("cannot move PID ", vpid, ": it has ", left.size(), left.size() == 1 ? " descendant (" : " descendants (",
                 childNames(left), ") and they are not all the tree shadowd set out to move (it changed "
                 "meanwhile: try again); nothing was frozen, the job runs on at home; --only moves process ", vpid,
                 " alone and leaves its children at home (its waits for them then go home)");
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

// The first of `children` (born here, away from home) not under the shim, said in a
// few words: it could not be frozen and captured with the job (settle_children.h).
// (What else they share with the job comes along: pipes and socketpairs between them
// are made anew on the next host as a tree's, resources/unix_socket.cc.)
kj::Maybe<kj::String> notUnderShim(const kj::Vector<resources::TreeProcess>& children) {
  auto answers = [](pid_t pid) {
    return kj::runCatchingExceptions([&]() { migctl::ControlClient probe(pid); }) == nullptr ||
           migctl::shimLoaded(pid);  // its control thread on its way (the freeze waits for it)
  };
  auto p = firstNotUnderShim(children, answers, resources::processRuns);
  if (p == nullptr) return nullptr;
  return kj::str("its child ", p->pid, " (", p->command.c_str(), "), born on this host, is not under libmig.so, so it "
                 "cannot move with it");
}

// A job's children born here, away from home (issue 12): on a stop-and-copy hop to
// another host they come along, in its image as a tree whose root is the job
// (migctl/tree_restart.h restartBornAway). One per job moved alone (sendCommand), one
// per moving member of a tree (sendTree).
struct BornAway {
  kj::Vector<resources::TreeProcess> children;  // at the first look, announced on the ticket
  bool cameAndWent = false;                     // some came and went during that look's moment
  bool carry = false;                           // children seen before the freeze come along
  kj::Own<migctl::FrozenTree> frozen;           // the job and its children, parked (null: the job alone)
  bool forks() const { return children.size() > 0 || cameAndWent; }
  // Parks the job's process `ctl` with its children, when it has any now (also one
  // born since the looks: the freeze parks it); else leaves it for the caller to park
  // alone, as ever (most jobs: known from their own /proc files, not all of /proc).
  void park(migctl::ControlClient& ctl) {
    if (!carry && resources::surelyChildless(ctl.realPid())) return;
    frozen = kj::heap<migctl::FrozenTree>(ctl, kFreezeTimeoutSeconds);
    if (frozen->single()) frozen = nullptr;  // they ended meanwhile
    carry = frozen.get() != nullptr;
  }
  resources::CaptureStats capture(image::ByteSink& out) {
    resources::CaptureOptions options;
    options.forMigration = true;
    return frozen->capture(out, options);
  }
};

// A hop back home refused for the job's children born away: which, and why.
kj::String homecomingRefusal(long vpid, const kj::Vector<resources::TreeProcess>& left, bool transient) {
  return kj::str("cannot move PID ", vpid, " home: it has ", left.size(),
                 left.size() == 1 ? " child (" : " children (", childNames(left),
                 ") born away from home, which cannot come home with it yet (issue 12); nothing was frozen, "
                 "the job runs on where it was; ",
                 transient ? "its children come and go: try again"
                           : "move it home once they have ended and been waited for");
}

double msSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// What every hop of one `migctl send` shares.
struct HopArgs {
  const char* to;
  const char* home;
  const char* deputy;
  const char* shadowdSocket;
  rpc::NetworkPolicy network;
  uint64_t stallMs;
  LinkMode linkMode;
  const char* mode = nullptr;  // --mode, null: pre-copy where the writes can be tracked
};

// Where a member's image goes. While the tree runs (pre-copy's rounds) straight to its
// hop. While the tree is frozen every member is captured at once, each by a thread of
// its own (on a busy machine each gets its share of a CPU; one after the other they
// would get one share for all), and the bytes come here, at most kHandOff at a time
// (a big member waits), for this thread to send: the event loop and the hop are its.
class MemberSink final : public image::ByteSink {
 public:
  explicit MemberSink(RpcSink& out) : out_(out) {}

  void write(const void* data, size_t len) override {
    if (!threaded_) return out_.write(data, len);
    auto* p = static_cast<const kj::byte*>(data);
    while (len > 0) {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return buf_.size() < kHandOff || abandoned_; });
      if (abandoned_) fail(kj::str("the hop was abandoned"));  // ends the capture's thread
      size_t n = std::min(len, kHandOff - buf_.size());
      buf_.insert(buf_.end(), p, p + n);
      p += n;
      len -= n;
      changed_.notify_all();
    }
  }

  // From now on write() runs in the capture's thread.
  void startThreaded() { threaded_ = true; }
  // The capture's thread: no more bytes.
  void finish() {
    std::lock_guard<std::mutex> lock(mutex_);
    finished_ = true;
    changed_.notify_all();
  }
  // A capture still running gets no further (this thread gave up the hop).
  void abandon() {
    std::lock_guard<std::mutex> lock(mutex_);
    abandoned_ = true;
    changed_.notify_all();
  }
  // This thread: sends what the capture hands over, until it finished.
  void pump(kj::WaitScope& ws) {
    for (;;) {
      std::vector<kj::byte> take;
      bool end;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return !buf_.empty() || finished_; });
        take.swap(buf_);
        end = finished_;
        changed_.notify_all();
      }
      if (!take.empty()) out_.write(take.data(), take.size());
      ws.poll();  // sent bytes go out
      if (end) return;
    }
  }

 private:
  static constexpr size_t kHandOff = 4 << 20;
  RpcSink& out_;
  bool threaded_ = false;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<kj::byte> buf_;
  bool finished_ = false;
  bool abandoned_ = false;
};

// A pre-copy (resources/precopy.h), a tree member's or a single process's: the image
// its rounds begin while the job runs and the freeze finishes.
struct MemberPrecopy {
  MemberPrecopy(pid_t pid, pid_t vpid, int uffd, image::ByteSink& out)
      : memory(pid, /*forMigration=*/true), precopy(pid, uffd, memory) {
    resources::fillJobHeader(header.initRoot<image::schema::Header>(), pid, vpid);
    w = kj::heap<image::ImageWriter>(out, header);
  }
  capnp::MallocMessageBuilder header;
  resources::ProcPageSource memory;
  resources::Precopy precopy;
  kj::Own<image::ImageWriter> w;
};

// One member of a tree on the move: its own job record at home, its own hop.
struct MemberHop {
  pid_t pid = 0;   // its PID on this host
  pid_t vpid = 0;  // at home (its PID as it knows it, everywhere)
  uint64_t jobId = 0;
  kj::Array<kj::byte> token;
  kj::String command;
  kj::Own<migctl::ControlClient> ctl;
  kj::Own<RpcSink> out;
  resources::CaptureStats stats{};
  kj::Own<MemberSink> sink;        // its image, into out
  kj::Own<MemberPrecopy> precopy;  // a pre-copy hop: its image as the rounds began it
  BornAway born;                   // away: its children born here, that come along
};

// MIG_TREE_MEMBERS (shadowd sets it: tree_members.h).
kj::Vector<MemberHop> parseMembers(const char* text) {
  kj::Vector<MemberHop> out;
  KJ_IF_MAYBE(entries, parseTreeMembers(text)) {
    for (auto& e : *entries) {
      MemberHop m;
      m.pid = e.pid;
      m.vpid = e.vpid;
      m.jobId = e.jobId;
      m.token = kj::mv(e.token);
      out.add(kj::mv(m));
    }
  } else {
    fail(kj::str(kTreeMembersEnv, " is malformed"));
  }
  return out;
}

// The System V objects a ticket announces, for the destination to check their keys and
// ids free before anything is frozen.
void setSysvNames(rpc::JobTicket::Builder ticket, const resources::SysvIpc& objects) {
  auto list = ticket.initSysv(static_cast<unsigned>(objects.shm.size() + objects.sem.size() + objects.msg.size()));
  unsigned i = 0;
  auto add = [&](const char* kind, const resources::SysvPerm& p) {
    list[i].setKind(kind);
    list[i].setKey(p.key);
    list[i].setId(p.id);
    ++i;
  };
  for (auto& o : objects.shm) add("shm", o.perm);
  for (auto& o : objects.sem) add("sem", o.perm);
  for (auto& o : objects.msg) add("msg", o.perm);
}

// The PIDs here of the children born away a ticket's job brings (the destination
// checks them free before anything is frozen).
void setAwayPids(rpc::JobTicket::Builder ticket, const BornAway& born) {
  auto pids = ticket.initAwayPids(static_cast<unsigned>(born.children.size()));
  for (unsigned i = 0; i < born.children.size(); ++i) pids.set(i, born.children[i].pid);
}

// What the members of a moving tree share (resources/shared_memory.h, MovingShare).
struct TreeShare {
  kj::Vector<resources::SharedObject> shared;
  resources::SysvIpc sysv;
  kj::String holder;
  bool any() const { return shared.size() > 0 || !sysv.empty(); }
  resources::MovingShare view() const { return resources::MovingShare{shared.asPtr(), &sysv, holder}; }
};

// The checkpoint block of a parked process (as migctl::captureFrozen reads it).
kj::Own<control::Block> parkedBlock(migctl::ControlClient& ctl, const control::Reply& reply) {
  if (reply.blockSize != sizeof(control::Block)) {
    fail(kj::str("process ", ctl.pid(), " runs an incompatible libmig (block size ", reply.blockSize, ")"));
  }
  resources::ProcPageSource memory(ctl.realPid(), /*forMigration=*/true);
  auto block = kj::heap<control::Block>();
  memory.read(reply.blockAddr, block.get(), sizeof(control::Block));
  return block;
}

// Found with every member parked. An outside process may have begun using a System V
// object between the look before the freeze and the freeze: the hop is aborted.
template <typename CtlOf>
TreeShare sharedByMembers(long vpid, kj::ArrayPtr<MemberHop* const> hops, kj::ArrayPtr<const control::Reply> parked, CtlOf&& ctlOf,
                          uint64_t jobId, kj::StringPtr here) {
  TreeShare out;
  kj::Vector<kj::Own<control::Block>> blocks;
  kj::Vector<resources::TreeCaptureMember> members;
  kj::Vector<pid_t> pids;
  for (size_t i = 0; i < hops.size(); ++i) {
    blocks.add(parkedBlock(ctlOf(hops[i]), parked[i]));
    resources::TreeProcess proc{};
    proc.pid = hops[i]->pid;
    members.add(resources::TreeCaptureMember{proc, blocks.back().get()});
    pids.add(hops[i]->pid);
  }
  KJ_IF_MAYBE(why, resources::sysvUsedOutside(pids.asPtr())) {
    fail(kj::str("cannot move PID ", vpid, " with its children: ", *why, "; the hop was aborted, the job runs on ",
                 here));
  }
  out.shared = resources::findTreeSharedMemory(members.asPtr());
  out.sysv = resources::findSysvIpc(pids.asPtr());
  kj::byte nonce[8];
  if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce)) fail(kj::str("getrandom: ", strerror(errno)));
  out.holder = kj::str("mig-tree-", jobId, "-", hex(kj::arrayPtr(nonce, sizeof(nonce))));
  return out;
}

// One member's image when the tree shares objects: the root's carries them.
resources::CaptureStats captureMember(migctl::ControlClient& ctl, const control::Reply& reply, image::ByteSink& out,
                                      const TreeShare& share, bool root) {
  auto block = parkedBlock(ctl, reply);
  resources::CaptureOptions options;
  options.forMigration = true;
  return resources::captureMovingMember(ctl.realPid(), *block, out, options, share.view(), root);
}

// Phase two of a tree's hop home (sendTree): every member, kept here frozen and stopped,
// is committed at once with the hop's number and size (home's gate lets none run until
// every member is restorable, shadow/home_gate.h). Each member is then settled by its own
// answer: one that runs at home ends here, one whose deputy came back resumes here, one
// without an answer stays frozen and stopped (this host's shadowd asks home again, as for
// one job). Returns 0 when every member runs at home (`restoreMs` grown by the slowest),
// else the exit status that says which.
template <typename CtlOf>
int commitTreeHome(kj::ArrayPtr<MemberHop*> hops, CtlOf& ctlOf, kj::Timer& timer, uint64_t limitMs, double& restoreMs,
                   kj::WaitScope& ws) {
  struct Answer {
    bool answered = false;
    kj::String homeFailed;
    double ms = 0;
    kj::String why;  // not answered
  };
  uint64_t hop = 0;
  if (getrandom(&hop, sizeof hop, 0) != static_cast<ssize_t>(sizeof hop)) {
    hop = static_cast<uint64_t>(getpid()) << 32 ^ static_cast<uint64_t>(time(nullptr));
  }
  kj::Vector<kj::Promise<Answer>> answers;
  for (auto* h : hops) {
    auto req = h->out->sink().commitRequest();
    req.setTreeHop(hop);
    req.setTreeMembers(static_cast<uint32_t>(hops.size()));
    auto answered =
        req.send().then([](auto r) { return Answer{true, kj::str(r.getHomeFailed()), r.getRestoreMs(), nullptr}; });
    answers.add(answered
                    .exclusiveJoin(timer.afterDelay(limitMs * kj::MILLISECONDS).then([limitMs]() -> Answer {
                      fail(kj::str("no answer within ", limitMs / 1000.0, " s"));
                    }))
                    .catch_([](kj::Exception&& e) { return Answer{false, nullptr, 0, kj::str(e.getDescription())}; }));
  }
  auto all = kj::joinPromises(answers.releaseAsArray()).wait(ws);
  kj::StringPtr failed = "", unanswered = "";
  auto calledOff = [](kj::StringPtr why) { return strstr(why.cStr(), "called off") != nullptr; };
  for (size_t i = 0; i < hops.size(); ++i) {
    MemberHop& h = *hops[i];
    Answer& a = all[i];
    if (!a.answered) {
      if (unanswered.size() == 0) unanswered = a.why;
      continue;
    }
    if (a.homeFailed.size() > 0) {
      if (h.born.carry) {
        h.born.frozen->resume();  // with its children born here, which never ran at home
        h.born.frozen->signalEach(SIGCONT);
      } else {
        ctlOf(&h).resume();
        kill(h.pid, SIGCONT);
      }
      // The member that failed says why; the others were called off because of it.
      if (failed.size() == 0 || (calledOff(failed) && !calledOff(a.homeFailed))) {
        failed = a.homeFailed;
      }
      continue;
    }
    if (h.born.carry) {
      h.born.frozen->exitEach();  // they run at home now, with it
      h.born.frozen->signalEach(SIGCONT);
    } else {
      ctlOf(&h).exitProcess();
      kill(h.pid, SIGCONT);
    }
    restoreMs = std::max(restoreMs, a.ms);
  }
  if (unanswered.size() > 0) {
    fprintf(stderr,
            "no answer to the commit (%s); the tree's members without one are kept here frozen and stopped, since "
            "home may run them: not resumed\n",
            unanswered.cStr());
    return kCommittedUnconfirmed;
  }
  if (failed.size() > 0) {
    fprintf(stderr, "hop home failed after its commit: %s; the job runs on where it was with its children\n",
            failed.cStr());
    return kHomeRestoreFailed;
  }
  return 0;
}

// How many times a move of a tree from home starts again when a child member ended
// before the freeze (sendCommand).
constexpr int kTreeAttempts = 4;

// A tree, from its home or from where it moved together (see the top of this file).
// The hops are those of a single
// process, one per member, over one link: each member is a job of its own there, as
// it is here, so every relation between members (parent and child, waits, kill,
// process groups, the pipes between them with their bytes) stays in this host's
// kernel, held by their deputies, and works through their calls home. Pre-copy where
// every member's writes can be tracked (rounds of all members' pages while the tree
// runs, then one freeze of all of them), else stop-and-copy; either way every member is
// frozen from the first park until the commit. `froze` is set as the first member is
// asked to park: a failure before that left the tree untouched.
int sendTree(kj::AsyncIoContext& io, migctl::ControlClient& rootCtl, long vpid, uint64_t jobId,
             kj::ArrayPtr<const kj::byte> token, kj::StringPtr command, const HopArgs& a, const ClusterKey& key,
             kj::Vector<MemberHop> members, bool& froze) {
  const pid_t rootReal = rootCtl.realPid();
  const bool atHome = a.deputy != nullptr;
  const char* here = atHome ? "at home" : "where it was";
  auto stillHere = [&](kj::StringPtr why) -> kj::String {
    return kj::str("cannot move PID ", vpid, " with its children: ", why, "; nothing was frozen, the job runs on ", here);
  };
  // The root is one more hop, first: parents before their children.
  MemberHop root;
  root.pid = rootReal;
  root.vpid = static_cast<pid_t>(vpid);
  root.jobId = jobId;
  root.token = kj::heapArray<kj::byte>(token);
  root.command = kj::str(command);
  kj::Vector<MemberHop*> hops;  // the root first, then the members still part of the tree
  bool homecoming = false;      // the destination is the tree's home: each member goes into its deputy
  bool precopy = a.mode == nullptr || strcmp(a.mode, "precopy") == 0;
  kj::String whyNot;            // why pre-copy was not possible: the result's second line
  // A member that ended before the freeze (a shell's `$(...)` that shadowd's look
  // listed, on a loaded host still running at presentMembers) is left out, as there:
  // nothing of it moves, its zombie stays here, its parent's deputy's to reap, and
  // shadowd drops its record (local_service.cc). Its transfer, if begun, is cancelled
  // (the destination forgets a sink dropped before its commit).
  auto leaveOut = [&](MemberHop& m) {
    kj::Vector<MemberHop*> rest;
    for (auto* h : hops) {
      if (h != &m) rest.add(h);
    }
    hops = kj::mv(rest);
    m.precopy = nullptr;
    m.sink = nullptr;
    m.out = nullptr;
    m.ctl = nullptr;
    m.pid = 0;
  };
  // The tree now must be the one shadowd made records for: a process born since has
  // none (it would be left behind), one ended since needs none.
  auto check = [&](kj::StringPtr when) {
    const bool frozen = when == "during the freeze";
    if (!atHome) {
      // Away, the members are jobs of their own here (none is another's child): a child
      // one of them started here comes along in its image, as for a job moved alone
      // (BornAway), to another host stop-and-copy. Before the freeze short children get
      // their moment to end (settle_children.h); at the freeze the members cannot reap
      // any more, so one there was started since. Those at the first look are
      // announced on the member's ticket (and make the hop stop-and-copy); those born
      // since come too on a stop-and-copy hop (the park takes them); otherwise they
      // refuse it.
      const bool first = when == "as the move began";
      kj::Vector<MemberHop*> each;
      each.add(&root);
      for (auto& m : members) {
        if (m.pid != 0) each.add(&m);
      }
      for (auto* h : each) {
        if (h->born.carry || (frozen && resources::surelyChildless(h->pid))) continue;
        auto look = [&]() { return childrenLeftBehind(h->pid, frozen); };
        auto born = frozen ? SettledChildren<resources::TreeProcess>{look(), false} : settledLook(look);
        if (first) h->born.cameAndWent = born.cameAndWent;
        if (born.left.size() == 0) continue;
        if (!frozen && (first || !precopy)) {
          KJ_IF_MAYBE(why, notUnderShim(born.left)) {
            fail(stillHere(kj::str("for its process ", h->vpid, ": ", *why, "; move it once that process has ended")));
          }
          if (first) h->born.children = kj::mv(born.left);
          h->born.carry = true;
          continue;
        }
        fail(awayChildrenRefusal(vpid, h->vpid, born.left, true, frozen,
                                 homecoming ? BornAwayRefused::home : BornAwayRefused::lateStart));
      }
      return;
    }
    // A live process shadowd made no record for; before the freeze it gets its moment
    // to end (its zombie stays here, its parent's deputy's to reap).
    // Frozen, one quick look serves both questions (resources::listFrozenTree).
    auto unknownLive = [&](const kj::Vector<resources::TreeProcess>& now) {
      kj::Vector<resources::TreeProcess> out;
      for (auto& p : now) {
        bool known = false;
        for (auto& m : members) known |= m.pid == p.pid;
        if (!known && !p.zombie) out.add(resources::TreeProcess(p));
      }
      return out;
    };
    kj::Vector<resources::TreeProcess> frozenLook;
    if (frozen) frozenLook = childrenLeftBehind(rootReal, /*frozen=*/true);
    // Frozen, the members fork no more: a short child started since the look (a
    // shell's next `$(...)`) ends by itself, a zombie left here for its parent's deputy
    // to reap, so it gets its moment too (full looks: it is not frozen).
    if (frozen && unknownLive(frozenLook).size() > 0) {
      settledLook([&]() { return unknownLive(childrenLeftBehind(rootReal)); });
      frozenLook = childrenLeftBehind(rootReal);
    }
    auto born = frozen ? SettledChildren<resources::TreeProcess>{unknownLive(frozenLook), false}
                       : settledLook([&]() { return unknownLive(childrenLeftBehind(rootReal)); });
    if (born.left.size() > 0) {
      auto& p = born.left[0];
      fail(kj::str("cannot move PID ", vpid, " with its children: its process ", p.pid, " (", p.command.c_str(),
                   ") was started ", when, "; ", frozen ? "the hop was aborted" : "nothing was frozen",
                   ", the job runs on at home; try again"));
    }
    auto now = frozen ? kj::mv(frozenLook) : childrenLeftBehind(rootReal);
    for (auto& m : members) {
      if (m.pid == 0) continue;  // left out before
      bool live = false;
      for (auto& p : now) live |= p.pid == m.pid && !p.zombie;
      if (!live && !frozen) {
        leaveOut(m);
        continue;
      }
      if (!live) {
        fail(kj::str("cannot move PID ", vpid, " with its children: its process ", m.pid, " (", m.command,
                     ") ended ", when, "; ", frozen ? "the hop was aborted" : "nothing was frozen",
                     ", the job runs on at home; try again"));
      }
    }
  };
  for (auto& m : members) {
    std::string comm;
    m.command = resources::readProcFileIfExists(m.pid, "comm", comm) ? kj::str(comm.c_str()) : kj::str("?");
    while (m.command.size() > 0 && m.command[m.command.size() - 1] == '\n') m.command = kj::str(m.command.slice(0, m.command.size() - 1));
  }
  check("as the move began");
  {
    kj::Vector<MemberHop> stay;
    for (auto& m : members) {
      if (m.pid != 0) stay.add(kj::mv(m));
    }
    members = kj::mv(stay);
  }
  // Every member under mig, before anything is frozen: one line naming the first that is not.
  kj::Vector<pid_t> all;
  all.add(rootReal);
  for (auto& m : members) {
    auto reached = kj::runCatchingExceptions([&]() {
      if (m.ctl.get() == nullptr) m.ctl = kj::heap<migctl::ControlClient>(m.pid);
    });
    KJ_IF_MAYBE(e, reached) {
      fail(stillHere(kj::str("its process ", m.vpid, " (", m.command, ") cannot move: ", e->getDescription(),
                             "; --only moves PID ", vpid, " alone")));
    }
    KJ_IF_MAYBE(file, resources::sharedWritableFileMapping(m.pid)) {
      fail(stillHere(kj::str("its process ", m.vpid, " (", m.command, ") maps ", *file,
                             " shared and writable without a lock on it through an fd open for reading and writing, so "
                             "its writes could not be kept in step with that file from another host")));
    }
    all.add(m.pid);
  }
  // System V objects move with the tree only if no process outside it uses them
  // (resources/sysv_ipc.h): never two live copies, one on each host. Memory the
  // members share moves as one object (resources/shared_memory.h, MovingShare).
  KJ_IF_MAYBE(why, resources::sysvUsedOutside(all.asPtr())) fail(stillHere(*why));

  auto& ws = io.waitScope;
  auto link = loginToPeer(io, key, a.linkMode, a.to).wait(ws);
  hopFaultPoint("send-login", [](kj::String why) { fail(kj::mv(why)); });
  auto& timer = io.provider->getTimer();
  auto stalled = [&]() {
    return kj::str("hop aborted: the destination ", a.to, " stopped answering (no progress for ", a.stallMs / 1000.0,
                   " s); the job runs on ", here);
  };
  hops.add(&root);
  for (auto& m : members) hops.add(&m);
  // At home every member execs its deputy after the commit (below), all or none: each
  // exec is proved first, before the destination is asked, or the hop is refused with
  // every member running on here. (A member that ended meanwhile is left out later.)
  if (atHome) {
    auto program = deputyProgram(a.deputy);
    for (auto* h : hops) {
      kj::String why;
      auto probed = kj::runCatchingExceptions([&]() {
        why = whyDeputyWouldNotStart(h->ctl.get() != nullptr ? *h->ctl : rootCtl, program, h->jobId, h->token,
                                     a.shadowdSocket);
        h->ctl = nullptr;  // (spent: a new one for what follows)
        h->ctl = kj::heap<migctl::ControlClient>(h == &root ? rootCtl.pid() : h->pid);
      });
      if (h != &root && !resources::processRuns(h->pid)) continue;
      KJ_IF_MAYBE(e, probed) { kj::throwFatalException(kj::mv(*e)); }
      if (why.size() > 0) {
        // (The root's command may span lines; a member's is its comm.)
        auto whose = h == &root ? kj::str("its deputy")
                                : kj::str("the deputy of its process ", h->vpid > 0 ? h->vpid : h->pid, " (", h->command, ")");
        fail(stillHere(kj::str(whose, " could not start (", why, ")")));
      }
    }
  }
  // The destination may refuse any of them before anything is frozen (the root's
  // ticket names the tree's System V objects: their keys and ids must be free there);
  // all asked at once, one round trip for the tree.
  resources::SysvIpc sysvBefore = resources::findSysvIpc(all.asPtr());
  // What members share is restored as one object by the root's restart, the others
  // finding it (resources/shared_memory.h); restored one by one into their deputies they
  // would not: such a tree comes home as moved jobs, deputies kept (keepDeputy).
  bool sharesBefore = !sysvBefore.empty();
  for (size_t i = 0; i < hops.size() && !sharesBefore; ++i) {
    sharesBefore = resources::sharedMemoryMapping(hops[i]->pid) != nullptr;
  }
  {
    kj::Vector<kj::Promise<kj::Tuple<rpc::ImageSink::Client, bool>>> asked;
    for (auto* h : hops) {
      auto receive = link->node.receiveRequest();
      auto ticket = receive.initTicket();
      if (h == &root) setSysvNames(ticket, sysvBefore);
      ticket.setJobId(h->jobId);
      ticket.setNetwork(a.network);
      ticket.setToken(h->token);
      ticket.setHome(a.home);
      ticket.setVpid(static_cast<int32_t>(h->vpid));
      ticket.setCommand(h == &root ? command : h->command.asPtr());
      ticket.setKeepDeputy(sharesBefore);
      ticket.setKeptFrozen(true);  // read only by a home that takes the tree back
      setAwayPids(ticket, h->born);
      asked.add(receive.send().then([](auto r) { return kj::tuple(r.getSink(), r.getHome()); }));
    }
    auto sinks = waitOrStall(kj::joinPromises(asked.releaseAsArray()), timer, a.stallMs, stalled(), ws);
    auto home = kj::heapArray<bool>(hops.size());
    for (size_t i = 0; i < hops.size(); ++i) {
      home[i] = kj::get<1>(sinks[i]);
      hops[i]->out = kj::heap<RpcSink>(kj::mv(kj::get<0>(sinks[i])), ws, timer, a.stallMs, stalled());
      hops[i]->sink = kj::heap<MemberSink>(*hops[i]->out);
    }
    // Back home every member is restored into its own deputy (deputy/homecoming.h), or
    // none is: a tree half local, half forwarded to itself, is never made.
    auto homeIs = treeHomecoming(home.asPtr());
    if (homeIs == TreeHomecoming::MIXED) {
      fail(stillHere(kj::str(a.to, " is its home but takes only some of its members back into their deputies (one moved "
                             "alone since, or its record there changed); move the members one by one with --only")));
    }
    homecoming = homeIs == TreeHomecoming::ALL;
  }
  // A member's children born here come along stop-and-copy (BornAway), to another host
  // or home (there each is forked with its PID of this host into the member's restart,
  // released at the tree's point of no return), not where the members share objects
  // (those move in the root's image).
  for (auto* h : hops) {
    if (h->born.children.size() == 0) continue;
    if (sharesBefore) {
      fail(stillHere(kj::str("its process ", h->vpid, " has children born on this host (", childNames(h->born.children),
                             ") and its members share memory or System V objects, which cannot move together yet")));
    }
    if (a.mode != nullptr && strcmp(a.mode, "stop-and-copy") != 0) {
      fail(stillHere(kj::str("the children born on this host of its process ", h->vpid, " (",
                             childNames(h->born.children), ") move with it stop-and-copy only; leave out --", a.mode)));
    }
  }
  // One that forked here during the look's moment may have a child again at the freeze.
  for (auto* h : hops) {
    if (precopy && a.mode == nullptr && h->born.forks()) {
      precopy = false;
      whyNot = kj::str("its process ", h->vpid, " has children born away from home, which move with it, and pre-copy "
                       "does not carry them");
    }
  }
  // A tree that surely moves stop-and-copy (asked so, or its members share objects)
  // has every member's restart there started now (an empty write, RpcSink::announce),
  // so that those starts run while this side does its last looks, not in the freeze
  // (with pre-copy the rounds' first bytes start them). The freeze waits for B's
  // answers (each member's restart has started: its 'W', as for post-copy): B's part
  // of the freeze is then the restores only, not the start of two processes per member
  // on top, and the capture does not share the CPU with those starts.
  bool announced = false;
  auto announce = [&]() {
    if (announced) return;
    announced = true;
    for (auto* h : hops) h->out->announce();
  };
  if ((a.mode != nullptr && strcmp(a.mode, "stop-and-copy") == 0) || sharesBefore) announce();
  for (auto* h : hops) resources::waitForLazyPages(h->pid);
  auto ctlOf = [&](MemberHop* h) -> migctl::ControlClient& { return h->ctl.get() != nullptr ? *h->ctl : rootCtl; };

  // Pre-copy where every member's writes can be tracked, as for one process: each
  // member's shim makes a userfaultfd (and ends that control connection: the freeze
  // takes a new one). One member that cannot makes the tree stop-and-copy, said on the
  // result's second line (with --precopy: refused, nothing frozen).
  // What members share (memory, System V objects) is captured once, frozen, into the
  // root's image: rounds per member would copy it per member. Such a tree goes
  // stop-and-copy.
  if (precopy) {
    kj::String shares;
    if (!sysvBefore.empty()) shares = kj::str("it uses System V IPC objects");
    for (size_t i = 0; i < hops.size() && shares.size() == 0; ++i) {
      KJ_IF_MAYBE(what, resources::sharedMemoryMapping(hops[i]->pid)) {
        shares = kj::str("its process ", hops[i]->vpid, " maps shared memory (", *what, ")");
      }
    }
    if (shares.size() > 0) {
      precopy = false;
      whyNot = kj::str(shares, ", and what the members share moves only while the tree is frozen");
      if (a.mode != nullptr) fail(stillHere(kj::str("--precopy is not possible: ", whyNot)));
    }
  }
  if (precopy) {
    kj::Vector<int> uffds;
    size_t asked = 0;
    for (auto* h : hops) {
      ++asked;
      int fd = ctlOf(h).trackWrites(whyNot);
      if (fd < 0) break;
      uffds.add(fd);
    }
    for (size_t i = 0; i < asked; ++i) {
      MemberHop* h = hops[i];
      h->ctl = nullptr;
      h->ctl = kj::heap<migctl::ControlClient>(h == &root ? rootCtl.pid() : h->pid);
    }
    if (uffds.size() < hops.size()) {
      for (int fd : uffds) close(fd);
      precopy = false;
      MemberHop* h = hops[uffds.size()];
      whyNot = kj::str("pre-copy is not possible for its process ", h->vpid, " (", h->command, "): ", whyNot);
      if (a.mode != nullptr) fail(stillHere(whyNot));
    } else {
      for (size_t i = 0; i < hops.size(); ++i) {
        hops[i]->precopy = kj::heap<MemberPrecopy>(hops[i]->pid, hops[i]->vpid, uffds[i], *hops[i]->sink);
      }
    }
  }

  if (!precopy) announce();  // stop-and-copy after all (a member's writes cannot be tracked)

  // The rounds, while the whole tree runs: each round every member's pages written
  // since its last one, until what the tree wrote during a round is small or stops
  // shrinking (the rule of one process, on the tree's sums: the freeze sends them all).
  auto sendStartedAt = std::chrono::steady_clock::now();
  uint64_t bytesBefore = 0;
  uint32_t rounds = 0;
  if (precopy) {
    kj::Vector<resources::PrecopyMember> each;
    for (auto* h : hops) each.add(resources::PrecopyMember{h->precopy->precopy, *h->precopy->w, h->pid, h != &root});
    rounds = resources::runRoundsTogether(each.asPtr(), resources::PrecopyRule{},
                                          [&](size_t i) { hops[i]->out->flush(); });
    kj::Vector<MemberHop*> ended;
    for (size_t i = 0; i < hops.size(); ++i) {
      if (each[i].ended) ended.add(hops[i]);
    }
    for (auto* h : ended) leaveOut(*h);
    for (auto* h : hops) {
      h->out->flush(/*drain=*/true);  // the link is empty when the tree stops
      bytesBefore += h->out->total();
    }
  }

  // Every member parked before any is captured: what they share at home is seen at
  // one instant, and none runs on while another is taken. Then every member captured
  // at once (MemberSink), and each image sent as soon as it is complete, followed at
  // once by phase one of its hop (ImageSink.done: the destination restores it up to
  // "ready, not running" while the next members are sent), so no member waits for the
  // one before it to be taken there.
  // The look again right before the park (the rounds may have taken seconds), with
  // its moment for short children, so the tree is parked between two of them.
  check("just before the freeze");
  if (announced) {
    for (auto* h : hops) h->out->flush(/*drain=*/true);  // every member's restart started on B
  }
  // The freeze's breakdown ($MIG_HOP_TIMES, hop_times.h), the tree's as one line: what
  // is spent per member shows as a phase that grows with the members.
  HopTimes times(kj::str("send tree ", precopy ? "pre-copy" : "stop-and-copy", " of ", hops.size()));
  auto frozenAt = std::chrono::steady_clock::now();
  times.mark("freeze");
  // A child member that ended since that look cannot park: it is left out as there
  // (its later steps skipped).
  kj::Vector<MemberHop*> endedNow;
  auto park = [&](MemberHop* h, auto&& step) {
    if (std::find(endedNow.begin(), endedNow.end(), h) != endedNow.end()) return;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions(step)) {
      if (h == &root || resources::processRuns(h->pid)) kj::throwFatalException(kj::mv(*e));
      endedNow.add(h);
    }
  };
  froze = true;
  // Away, to another host, stop-and-copy: a member with children now is parked with
  // them (BornAway), the others alone.
  const bool mayCarry = !atHome && !precopy;
  for (auto* h : hops) {
    park(h, [&]() {
      if (mayCarry) h->born.park(ctlOf(h));
      if (!h->born.carry) ctlOf(h).requestFreeze();
    });
  }
  // One per member left in (a member parked with its children: its tree has its block).
  kj::Vector<control::Reply> parked;
  for (auto* h : hops) {
    park(h, [&]() { parked.add(h->born.carry ? control::Reply{} : ctlOf(h).awaitFreeze(kFreezeTimeoutSeconds)); });
  }
  for (auto* h : endedNow) leaveOut(*h);
  times.mark("park");
  // A child forked, or a member ended, between the look above and the park: the hop is
  // aborted before anything of it is sent (every member parked, none forks now), the
  // tree resumes here whole. (After a hop's done, the destination keeps its prepared
  // copy until its commit or the transfer timeout.)
  check("during the freeze");
  times.mark("child-check");
  // What the parked members share, seen at one instant: captured once, in the root's
  // image (resources/shared_memory.h, MovingShare); the others list them.
  // (Members parked with their children are not looked at: the tree shared nothing
  // before the freeze, and one shared since with them is used outside the rest.)
  kj::Vector<MemberHop*> alone;
  kj::Vector<control::Reply> aloneParked;
  for (size_t i = 0; i < hops.size(); ++i) {
    if (hops[i]->born.carry) continue;
    alone.add(hops[i]);
    aloneParked.add(parked[i]);
  }
  auto share = sharedByMembers(vpid, alone.asPtr(), aloneParked.asPtr(), ctlOf, jobId, here);
  if (alone.size() < hops.size() && share.any()) {
    fail(kj::str("cannot move PID ", vpid, " with its children: they began to share memory or System V objects while "
                 "a member has children born on this host; the hop was aborted, the job runs on ", here, " (try again)"));
  }
  if (homecoming && share.any()) {
    fail(kj::str("cannot move PID ", vpid, " with its children home: they began to share memory or System V objects; "
                 "the hop was aborted, the job runs on ", here, " (try again: it then comes home as moved jobs)"));
  }
  if (precopy && share.any()) {
    fail(kj::str("cannot move PID ", vpid, " with its children: they began to share memory or System V objects during "
                 "the pre-copy; the hop was aborted, the job runs on ", here, " (try again)"));
  }
  times.mark("share-check");
  // Every member captured at once, each by a thread of its own (MemberSink), and each
  // image followed at once by phase one of its hop (ImageSink.done: the destination
  // restores it up to "ready, not running" while the next members are sent). When they
  // share objects the root's restart makes them there and the others find them: their
  // phase one is asked once the root's is done (the time reported is then the root's
  // and theirs).
  kj::Vector<kj::Promise<double>> ready;
  uint64_t bytes = 0;
  auto askDone = [](MemberHop* h) {
    return h->out->sink().doneRequest().send().then([](auto r) { return r.getRestoreMs(); });
  };
  kj::Maybe<kj::ForkedPromise<double>> rootReady;
  {  // the capture threads are joined when this block ends
    auto failed = kj::heapArray<kj::Maybe<kj::Exception>>(hops.size());
    kj::Vector<kj::Own<kj::Thread>> captures;
    // However this block is left, no capture's thread waits for this one any more:
    // abandoned (they end at their next write), then joined.
    KJ_DEFER(for (auto* h : hops) h->sink->abandon());
    for (size_t i = 0; i < hops.size(); ++i) {
      MemberHop* h = hops[i];
      h->sink->startThreaded();
      captures.add(kj::heap<kj::Thread>([&, h, i]() {
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
          if (h->born.carry) {
            h->stats = h->born.capture(*h->sink);
          } else if (precopy) {
            h->stats = migctl::finishFrozen(ctlOf(h), parked[i], h->precopy->memory, h->precopy->precopy, *h->precopy->w);
          } else if (share.any()) {
            h->stats = captureMember(ctlOf(h), parked[i], *h->sink, share, i == 0);
          } else {
            h->stats = migctl::captureFrozen(ctlOf(h), parked[i], /*forMigration=*/true, *h->sink);
          }
        })) {
          failed[i] = kj::mv(*e);
        }
        h->sink->finish();
      }));
    }
    for (size_t i = 0; i < hops.size(); ++i) {
      MemberHop* h = hops[i];
      h->sink->pump(ws);
      KJ_IF_MAYBE(e, failed[i]) { kj::throwFatalException(kj::mv(*e)); }
      h->out->flush();
      if (!share.any()) {
        ready.add(askDone(h));
      } else if (i == 0) {
        rootReady = askDone(h).fork();
      } else {
        ready.add(KJ_ASSERT_NONNULL(rootReady).addBranch().then(
            [h, askDone](double rootMs) { return askDone(h).then([rootMs](double ms) { return rootMs + ms; }); }));
      }
      ws.poll();  // what is sent goes out while the next member's bytes come
    }
  }
  KJ_IF_MAYBE(r, rootReady) { ready.add(r->addBranch()); }
  for (auto* h : hops) {
    h->out->flush(/*drain=*/true);
    bytes += h->out->total();
  }
  times.mark("capture-send");
  double transferMs = msSince(frozenAt);
  double sendMs = msSince(sendStartedAt);
  hopFaultPoint("send-frozen", [](kj::String why) { fail(kj::mv(why)); });

  // Phase one, for every member: each restored there up to "ready, not running" (asked
  // above, as each image was sent).
  double restoreMs = 0;
  {
    auto restored = waitOrStall(kj::joinPromises(ready.releaseAsArray()), timer, a.stallMs + kPrepareAllowanceMs,
                                kj::str("hop aborted: the destination ", a.to, " stopped answering while restoring (",
                                        (a.stallMs + kPrepareAllowanceMs) / 1000.0, " s); the job runs on ", here),
                                ws);
    for (double ms : restored) restoreMs = std::max(restoreMs, ms);
  }
  times.mark("prepare");
  hopFaultPoint("send-prepared", [](kj::String why) { fail(kj::mv(why)); });

  // The commit point: every member is given up here, children first: at home each
  // becomes the deputy of its own job record, elsewhere each ends. At home the execs
  // wait until B answers the commit (each shim execs its deputy once its control
  // connection ends: hangUp below, or this process's end), so that eight execs here
  // do not share the CPU with B's release of the members, as a post-copy hop's job
  // becomes its deputy only later; the members' calls home wait for their deputies.
  // A hop home: every member stays here, frozen and stopped (as one job's does), until
  // home says that the tree runs there (then each ends here) or that its return was
  // called off, every deputy back (then each resumes here): all or none, since home
  // lets no member run before every one is restorable (shadow/home_gate.h).
  for (size_t i = hops.size(); i-- > 0;) {
    MemberHop& h = *hops[i];
    migctl::ControlClient& ctl = ctlOf(&h);
    if (homecoming) {
      if (kill(h.pid, SIGSTOP) != 0) {
        const int err = errno;
        for (size_t j = i + 1; j < hops.size(); ++j) {
          kill(hops[j]->pid, SIGCONT);
          if (hops[j]->born.carry) hops[j]->born.frozen->signalEach(SIGCONT);
        }
        fail(kj::str("cannot stop the frozen process ", h.vpid, ": ", strerror(err), "; the job runs on ", here));
      }
      if (h.born.carry) h.born.frozen->signalEach(SIGSTOP);  // its children born here, carried home, too
      continue;
    }
    if (!atHome) {
      if (h.born.carry) {
        h.born.frozen->exitEach();  // its children too: they run there now, with it
      } else {
        ctl.exitProcess();
      }
      continue;
    }
    auto idText = kj::str(h.jobId), tokenEnv = kj::str(kTokenEnv, "=", hex(h.token)),
         dropText = kj::str(kj::hex(h.stats.pendingSignals));
    kj::StringPtr args[] = {a.deputy, "--job-id", idText, tokenEnv, "--socket", a.shadowdSocket,
                            "--drop-signals", dropText};
    ctl.becomeDeputyOnClose(args);
  }
  KJ_DEFER(for (auto* h : hops) ctlOf(h).hangUp());  // at the latest: the deputies start
  printf(homecoming ? "COMMITTED-HOME\n" : "COMMITTED\n");
  fflush(stdout);
  times.mark("give-up");
  // The System V objects are the destination's now: none left here for a stale use.
  resources::removeSysvIpc(share.sysv);
  hopFaultPoint("send-committed", [](kj::String why) { fail(kj::mv(why)); });

  // Phase two: every member runs there.
  if (homecoming) {
    auto code = commitTreeHome(hops.asPtr(), ctlOf, timer, a.stallMs + kPrepareAllowanceMs, restoreMs, ws);
    if (code != 0) return code;
  }
  kj::Vector<kj::Promise<double>> running;
  for (auto* h : homecoming ? kj::ArrayPtr<MemberHop*>() : hops.asPtr()) {
    running.add(h->out->sink().commitRequest().send().then([](auto r) { return r.getRestoreMs(); }));
  }
  auto committed = kj::runCatchingExceptions([&]() {
    auto r = waitOrStall(kj::joinPromises(running.releaseAsArray()), timer, a.stallMs + kPrepareAllowanceMs,
                         kj::str("no answer within ", (a.stallMs + kPrepareAllowanceMs) / 1000.0, " s"), ws);
    double most = 0;
    for (double ms : r) most = std::max(most, ms);
    restoreMs += most;
  });
  for (auto* h : hops) ctlOf(h).hangUp();  // B runs them: the deputies start here
  KJ_IF_MAYBE(e, committed) {
    fprintf(stderr, "no answer to the commit (%s)\n", e->getDescription().cStr());
    return kCommittedUnconfirmed;
  }
  double freezeMs = msSince(frozenAt);
  times.mark("commit");
  times.write();
  printf("MIGRATED %.3f %llu %.3f %.3f %s %llu %llu %u %llu %.3f\n", freezeMs, static_cast<unsigned long long>(bytes),
         transferMs, restoreMs, precopy ? "pre-copy" : "stop-and-copy", static_cast<unsigned long long>(bytesBefore),
         static_cast<unsigned long long>(bytes - bytesBefore), rounds, 0ull, sendMs);
  if (whyNot.size() > 0) printf("%s\n", whyNot.cStr());
  return 0;
}

// Post-copy (resources/network_page_source.h): the frozen job's pages that the image
// left out, served to the destination's page server until it has them all (finished).
// Right after the commit they are read from the frozen job; meanwhile they are copied
// (copyAll) into a file in this host's spool (page_copy.h: `copyPath`), so that the
// job can become its deputy (its calls home wait for that) without waiting for the
// destination, and so that this host's shadowd can serve them if this process dies.
class PageSourceImpl final : public PageServer {
 public:
  PageSourceImpl(pid_t pid, kj::Own<kj::PromiseFulfiller<void>> finished, kj::StringPtr copyPath)
      : PageServer(kj::mv(finished)), pid_(pid), memory_(pid, /*forMigration=*/true), copyPath_(kj::str(copyPath)) {}

  // The destination has every page, or is lost: nothing is left for shadowd to serve.
  void dropCopy() {
    if (copyPath_.size() > 0) unlink(copyPath_.cStr());
  }

  // The runs the destination will ask for (the image's postcopyPages), in address order.
  void setRuns(kj::ArrayPtr<const resources::PageSpan> runs) {
    for (auto& r : runs) runs_.add(PageRun{r.addr, r.pages * 4096, 0});
  }

  // Copies every run out of the frozen job, a piece at a time, serving requests between
  // the pieces. Throws if the copy cannot be made (the job then stays frozen here).
  void copyAll(kj::WaitScope& ws) {
    kj::String why;
    copy_ = PageCopy::create(copyPath_, kj::heapArray<PageRun>(runs_.asPtr()), why);
    if (copy_.get() == nullptr) fail(kj::str("cannot keep a copy of the job's pages: ", why));
    constexpr uint64_t kPiece = 8u << 20;
    kj::AutoCloseFd pagemap(::open(kj::str("/proc/", pid_, "/pagemap").cStr(), O_RDONLY | O_CLOEXEC));
    for (copiedRuns_ = 0; copiedRuns_ < runs_.size(); ++copiedRuns_) {
      const PageRun& r = copy_->runs()[copiedRuns_];
      for (copiedBytes_ = 0; copiedBytes_ < r.len;) {
        const uint64_t n = std::min(kPiece, r.len - copiedBytes_);
        // Only the present pages: a run may be a whole region (densePostcopyRegions)
        // whose absent pages are zero, as the new copy is already.
        kj::Vector<resources::PageSpan> present;
        const uint64_t from = r.addr + copiedBytes_;
        if (pagemap.get() < 0 || !resources::scanPresent(pagemap.get(), from, from + n, present)) {
          present.add(resources::PageSpan{from, n / 4096});
        }
        for (const resources::PageSpan& s : present) {
          for (uint64_t at = s.addr, end = s.addr + s.pages * 4096; at < end;) {
            iovec local{copy_->bytes(r) + (at - r.addr), end - at};
            iovec remote{reinterpret_cast<void*>(at), end - at};
            ssize_t got = process_vm_readv(pid_, &local, 1, &remote, 1, 0);
            if (got <= 0) {
              // Unreadable through process_vm_readv (e.g. a page the kernel refuses): /proc.
              memory_.read(at, local.iov_base, end - at);
              got = static_cast<ssize_t>(end - at);
            }
            at += static_cast<uint64_t>(got);
          }
        }
        copiedBytes_ += n;
        ws.poll();  // the destination's requests meanwhile
      }
    }
    copy_->markComplete();
  }

 private:
  void fill(uint64_t addr, kj::ArrayPtr<kj::byte> bytes) override {
    for (uint64_t done = 0; done < bytes.size();) {
      const uint64_t at = addr + done;
      size_t i = 0;
      while (i < runs_.size() && !(runs_[i].addr <= at && at < runs_[i].addr + runs_[i].len)) ++i;
      KJ_REQUIRE(i < runs_.size(), "a page request outside the post-copy pages", kj::hex(at));
      const PageRun& r = runs_[i];
      uint64_t n = std::min<uint64_t>(bytes.size() - done, r.addr + r.len - at);
      const uint64_t off = at - r.addr;
      if (copy_.get() != nullptr && (i < copiedRuns_ || (i == copiedRuns_ && off + n <= copiedBytes_))) {
        memcpy(bytes.begin() + done, copy_->bytes(copy_->runs()[i]) + off, n);
      } else {
        memory_.read(at, bytes.begin() + done, n);  // still frozen: not copied yet
      }
      done += n;
    }
  }

  pid_t pid_;
  resources::ProcPageSource memory_;
  kj::String copyPath_;  // "": the copy in this process's memory only
  kj::Vector<PageRun> runs_;
  kj::Own<PageCopy> copy_;
  size_t copiedRuns_ = 0;     // runs_[0, copiedRuns_) are in copy_ whole,
  uint64_t copiedBytes_ = 0;  // and this much of runs_[copiedRuns_]
};

// A post-copy freeze's work ahead of the host's other programs (issue 14): beside busy
// programs at the same priority, each wake-up in it (the job's threads parking, this
// process's steps) waited for a CPU and the freeze grew 3-4x. Raised for the freeze
// only, for this thread (Linux keeps a priority per thread; one made meanwhile takes
// this one's) and the job's threads, each back to its own when the freeze ends or fails
// (the job then runs on here). Needs CAP_SYS_NICE, as shadowd has as root; without it
// nothing changes. Not for pre-copy: its freeze with it had two multi-second hops in
// seven on the test VM (the last round's pages), not understood.
class FreezePriority {
 public:
  explicit FreezePriority(pid_t job) {
    lift(0);
    DIR* d = opendir(kj::str("/proc/", job, "/task").cStr());
    if (d == nullptr) return;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') lift(static_cast<pid_t>(atoi(e->d_name)));
    }
    closedir(d);
  }
  ~FreezePriority() {
    for (auto& r : raised_) setpriority(PRIO_PROCESS, static_cast<id_t>(r.tid), r.nice);
  }
  KJ_DISALLOW_COPY(FreezePriority);

 private:
  static constexpr int kNice = -10;
  void lift(pid_t tid) {
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
    if (errno == 0 && nice > kNice && setpriority(PRIO_PROCESS, static_cast<id_t>(tid), kNice) == 0) {
      raised_.add(Raised{tid, nice});
    }
  }
  struct Raised {
    pid_t tid;  // 0: this thread
    int nice;
  };
  kj::Vector<Raised> raised_;
};

// The frozen job's image for a post-copy hop: everything but the pages of its big
// private anonymous regions, which postcopyPages lists. Returns those pages' bytes.
uint64_t capturePostcopy(migctl::ControlClient& ctl, image::ByteSink& out, resources::CaptureStats& stats,
                         PageSourceImpl& source, HopTimes& times, kj::Array<resources::RegionSpan> dense) {
  control::Reply reply = ctl.freeze(kFreezeTimeoutSeconds);
  times.mark("park");
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
  resources::PostcopySource memory(own, pid, kj::mv(dense));
  {
    // The look at the maps and the walk of the present pages of regions not listed
    // whole (`dense`; 4 ms for 1 GiB quiet, 17-28 at load) on a second thread, beside
    // the rest of the state: the job is frozen, neither changes. Joined (an exception
    // of its rethrown) before the write.
    kj::Thread walk([&]() { memory.prefetch(); });
    resources::captureProcessState(pid, *block, w, stats, options);
    times.mark("state");
  }
  times.mark("walk");
  resources::writeMemory(memory, w, stats, nullptr);
  times.mark("memory");
  resources::writePostcopyPages(w, memory.remote());
  source.setRuns(memory.remote());
  w.finish();
  stats.imageBytes = w.bytesWritten();
  return memory.remoteBytes();
}

}  // namespace

int sendCommand(int argc, char** argv) {
  const char *to = nullptr, *keyPath = nullptr, *home = nullptr, *command = "", *deputy = nullptr,
             *shadowdSocket = nullptr, *pagesFile = "";
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
    else if (is("--pages-file")) pagesFile = argv[++i];
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
  if (deputy != nullptr) {
    auto why = tryDeputyStart(deputy, shadowdSocket, kDeputyStartMs);
    if (why.size() > 0) {
      fail(kj::str("cannot move PID ", vpid > 0 ? vpid : pid, ": its deputy would not start here (", deputy, ": ", why,
                   "); nothing was frozen, the job runs on at home"));
    }
  }
  auto token = tokenFromEnv();
  auto key = ClusterKey::load(keyPath);

  auto io = kj::setupAsyncIo();
  auto& ws = io.waitScope;
  auto ctl = kj::heap<migctl::ControlClient>(static_cast<pid_t>(pid));  // a process not under mig: said first
  // A file mapped shared and writable follows the job as a copy kept coherent at the
  // locks the job takes through an fd of the file (shim/forward/shared_file_mapping.h);
  // one it shares without such locks (futexes, atomics) or has no such fd of cannot:
  // refused before anything happens to the job.
  // Read-only shared and private mappings of home files travel as private memory.
  KJ_IF_MAYBE(file, resources::sharedWritableFileMapping(static_cast<pid_t>(pid))) {
    fail(kj::str("cannot move PID ", pid, ": it maps ", *file,
                 " shared and writable without a lock on it through an fd open for reading and writing, so its writes "
                 "could not be kept in step with that file from another host; the job runs on ",
                 deputy != nullptr ? "at home" : "where it was"));
  }
  // (Most jobs have no child: known from their own /proc files, not all of /proc.)
  if (deputy != nullptr && !resources::surelyChildless(ctl->realPid())) {
    auto children = childrenLeftBehind(ctl->realPid());
    // Asked on the job's control connection, which its shim serves alone and ends after
    // the answer: a new one for the hop.
    kj::Array<pid_t> table;
    for (auto& p : children) {
      if (!p.zombie) continue;
      table = ctl->bornAwayChildren();
      ctl = nullptr;
      ctl = kj::heap<migctl::ControlClient>(static_cast<pid_t>(pid));
      break;
    }
    if (const resources::TreeProcess* p = bornAwayCameHome(children, table)) {
      fail(kj::str("cannot move PID ", pid, ": its process ", p->pid, " (", p->command.c_str(), "), born away from home, "
                   "came home with it and ", p->zombie ? "has ended without being waited for: its status would be lost" :
                   "cannot move again yet", " (issue 12); nothing was frozen, the job runs on at home; "
                   "move it once that process has ended and been waited for"));
    }
  }
  // The job is the process and its descendants: from its home, with the job records
  // shadowd made for them, they move together; anywhere else one with children is
  // refused before the destination is asked. --only keeps the move of one process
  // (its children stay here).
  if (!only) {
    const char* tree = getenv(kTreeMembersEnv);
    auto members = parseMembers(tree != nullptr ? tree : "");
    if (deputy != nullptr && members.size() > 0) members = presentMembers(ctl->realPid(), kj::mv(members));
    if (members.size() > 0) {
      if (mode != nullptr && strcmp(mode, "postcopy") == 0) {
        fail(kj::str("cannot move PID ", vpid > 0 ? vpid : pid, " with its children by ", mode, ": a process tree moves "
                     "pre-copy or stop-and-copy (", mode, " is not built for trees yet); nothing was frozen, the job runs on ",
                     deputy != nullptr ? "at home" : "where it was", "; leave out --", mode));
      }
      HopArgs a{to, home, deputy, shadowdSocket, network, stallMs, linkMode, mode};
      // A child member can end at any moment before the freeze (a shell's short
      // `$(...)`): a look at it then fails (its /proc gone, its control closed). Nothing
      // is frozen yet, so from home the move starts again with the members still there,
      // a few times; one ended later is left out where it is seen (sendTree).
      for (int attempt = 1;; ++attempt) {
        kj::Vector<pid_t> pids;
        for (auto& m : members) pids.add(m.pid);
        bool froze = false;
        int rc = 0;
        auto failed = kj::runCatchingExceptions([&]() {
          rc = sendTree(io, *ctl, vpid > 0 ? vpid : pid, jobId, token, command, a, key, kj::mv(members), froze);
        });
        KJ_IF_MAYBE(e, failed) {
          bool oneEnded = false;
          for (pid_t p : pids) oneEnded |= !resources::processRuns(p);
          if (froze || !oneEnded || deputy == nullptr || attempt == kTreeAttempts) kj::throwFatalException(kj::mv(*e));
          ctl = nullptr;  // its control connection may be spent (pre-copy's ends it)
          ctl = kj::heap<migctl::ControlClient>(static_cast<pid_t>(pid));
          members = presentMembers(ctl->realPid(), parseMembers(tree));
          if (members.size() == 0) break;
          continue;
        }
        return rc;
      }
    }
  }
  // Away every child was born here (issue 12): they come with the job, in its image as
  // a tree (migctl/tree_restart.h restartBornAway), each under the shim, to any host
  // but home. At home a child is a process born since shadowd's look. Either may be
  // about to end: its moment first.
  BornAway born;
  // Children born here that cannot come along refuse the hop before anything is frozen.
  auto refuseUncarried = [&](const kj::Vector<resources::TreeProcess>& children) {
    KJ_IF_MAYBE(w, notUnderShim(children)) {
      fail(kj::str("cannot move PID ", vpid > 0 ? vpid : pid, ": ", *w, "; nothing was frozen, the job runs on where "
                   "it was; move it once that process has ended, or --only moves process ", vpid > 0 ? vpid : pid,
                   " alone"));
    }
  };
  if (!only) {
    auto left = settledLook([&]() { return lostIfAlone(ctl->realPid(), deputy != nullptr); });
    if (left.left.size() > 0 && deputy != nullptr) fail(treeRefusal(vpid > 0 ? vpid : pid, left.left));
    refuseUncarried(left.left);
    born.children = kj::mv(left.left);
    born.cameAndWent = left.cameAndWent;
  }
  born.carry = born.children.size() > 0;
  // System V objects move with the job (made again there with their keys and ids,
  // removed here at the commit) unless a process outside it uses one too
  // (resources/sysv_ipc.h): refused now, nothing frozen. Pre-copy and post-copy do not
  // carry them: such a job moves stop-and-copy.
  const pid_t self = ctl->realPid();
  KJ_IF_MAYBE(why, resources::sysvUsedOutside(kj::arrayPtr(&self, 1))) {
    fail(kj::str("cannot move PID ", pid, ": ", *why, "; nothing was frozen, the job runs on ",
                 deputy != nullptr ? "at home" : "where it was"));
  }
  kj::String sysvNote;
  resources::SysvIpc sysvBefore = resources::findSysvIpc(kj::arrayPtr(&self, 1));
  if (!sysvBefore.empty()) {
    if (mode != nullptr && strcmp(mode, "stop-and-copy") != 0) {
      fail(kj::str("cannot move PID ", pid, " by ", mode, ": it uses System V IPC objects, which move stop-and-copy "
                   "only; nothing was frozen, the job runs on ", deputy != nullptr ? "at home" : "where it was",
                   "; leave out --", mode));
    }
    mode = "stop-and-copy";
    sysvNote = kj::str("the job's System V objects move with it, and pre-copy does not carry them");
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
  ticket.setKeptFrozen(true);  // read only by a home that takes the job back
  ticket.setVpid(static_cast<int32_t>(vpid > 0 ? vpid : pid));
  ticket.setCommand(command);
  setSysvNames(ticket, sysvBefore);
  setAwayPids(ticket, born);
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
    auto left = settledLook([&]() { return liveOnly(childrenLeftBehind(ctl->realPid())); });
    if (left.left.size() > 0) fail(homecomingRefusal(vpid > 0 ? vpid : pid, left.left, left.cameAndWent));
  }
  // Back home the job goes into its deputy's process, which has no page server: a
  // post-copy hop home is sent as the default (pre-copy where possible), and says so.
  kj::String modeNote;
  if (homecoming && mode != nullptr && strcmp(mode, "postcopy") == 0) {
    mode = nullptr;
    modeNote = kj::str("a hop home is not post-copy: the job goes back into its deputy's process");
  }
  // A job that forks here (children at the look, or come and gone during it) moves
  // stop-and-copy, which takes along the children it has at the freeze, to another
  // host or home (there each is forked with its PID of this host, step 3 of "Children
  // born away"); pre-copy and post-copy do not.
  kj::String bornNote;
  // (One that forked here during the look's moment may have a child again at its freeze.)
  if (born.forks() && mode == nullptr) {
    mode = "stop-and-copy";
    bornNote = kj::str("its children born away from home move with it, and pre-copy does not carry them");
  } else if (born.carry && strcmp(mode, "stop-and-copy") != 0) {
    fail(kj::str("cannot move PID ", vpid > 0 ? vpid : pid, " by ", mode, ": its children born on this host (",
                 childNames(born.children), ") move with it stop-and-copy only; nothing was frozen, the job runs on where it "
                 "was; leave out --", mode));
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

  // Post-copy: the destination takes the page source now (and may refuse, the job
  // untouched); it asks for pages only once the job runs there.
  const bool postcopy = mode != nullptr && strcmp(mode, "postcopy") == 0;
  // Post-copy's deputy starts after the commit (the job stays here as its pages'
  // source until they are copied): its exec is proved first.
  if (postcopy && deputy != nullptr) {
    auto why = whyDeputyWouldNotStart(*ctl, deputyProgram(deputy), jobId, token, shadowdSocket);
    if (why.size() > 0) {
      fail(kj::str("cannot move PID ", vpid > 0 ? vpid : pid, ": its deputy could not start (", why,
                   "); nothing was frozen, the job runs on at home"));
    }
    ctl = nullptr;
    ctl = kj::heap<migctl::ControlClient>(static_cast<pid_t>(pid));
  }
  auto finished = kj::newPromiseAndFulfiller<void>();
  uint64_t remoteBytes = 0;
  PageSourceImpl* pages = nullptr;          // kept alive by pageSource, whatever the destination does
  kj::Maybe<rpc::PageSource::Client> pageSource;
  kj::Array<resources::RegionSpan> dense;  // post-copy: regions listed whole at the freeze
  if (postcopy) {
    // Which regions are mostly present, looked at off the freeze and before B starts
    // the job's restart, whose start it would otherwise share the CPU with (a hint:
    // failing, it finds none).
    (void)kj::runCatchingExceptions([&]() {
      resources::ProcPageSource maps(ctl->realPid(), /*forMigration=*/true);
      dense = resources::densePostcopyRegions(maps, ctl->realPid());
    });
    auto req = out.sink().postcopyRequest();
    auto server = kj::heap<PageSourceImpl>(ctl->realPid(), kj::mv(finished.fulfiller), pagesFile);
    pages = server.get();
    rpc::PageSource::Client client = kj::mv(server);
    req.setSource(client);
    pageSource = kj::mv(client);
    waitOrStall(req.send(), timer, stallMs,
                kj::str("hop aborted: the destination ", to, " stopped answering; the job runs on ",
                        deputy != nullptr ? "at home" : "where it was"),
                ws);
  }

  // The look again right before the freeze (the rounds may have taken seconds): a job
  // forking short children all the while is frozen between two of them, not refused
  // after the freeze for one that came meanwhile. Any child now is one started since
  // the first look: "try again" if it does not end. Away, to another host,
  // stop-and-copy, they come along instead (the freeze parks them; their PIDs were not
  // announced: one taken there fails the restore, the hop aborted).
  auto lookBeforeFreeze = [&]() {
    if (only || born.carry) return;  // (those born since come too: the freeze parks them)
    auto left = settledLook([&]() { return lostIfAlone(ctl->realPid(), deputy != nullptr); });
    if (left.left.size() == 0) return;
    if (deputy != nullptr) fail(treeRefusal(vpid > 0 ? vpid : pid, left.left));
    if (uffd < 0 && !postcopy) {
      refuseUncarried(left.left);
      born.carry = true;
      return;
    }
    fail(awayChildrenRefusal(vpid > 0 ? vpid : pid, 0, left.left, /*cameAndWent=*/true, false,
                             BornAwayRefused::lateStart));
  };

  // Pre-copy's image and write tracking, kept until this process ends (as a tree's
  // members' are): closing the userfaultfd unregisters the job's memory, and the kernel
  // then clears the protection of every page (50-190 ms for 1 GiB on the test VM), which
  // must not be inside the freeze. By then the job here has become its deputy or ended,
  // its address space gone, and the close walks nothing. After a failed hop the job
  // resumes with its pages still protected until then, at no cost to it (asynchronous
  // protection: the kernel lifts it at the first write, as during the rounds).
  kj::Own<MemberPrecopy> tracked;
  resources::CaptureStats stats;
  // From the first byte captured: the rate shadowd learns for balance's cost of a move.
  auto sendStartedAt = std::chrono::steady_clock::now();
  uint64_t bytesBefore = 0;
  uint32_t rounds = 0;
  std::chrono::steady_clock::time_point frozenAt;
  // The freeze's breakdown ($MIG_HOP_TIMES, hop_times.h): its first mark is the freeze.
  HopTimes times(postcopy ? "send post-copy" : uffd >= 0 ? "send pre-copy" : "send stop-and-copy");
  kj::Maybe<FreezePriority> priority;
  if (postcopy) {
    lookBeforeFreeze();
    priority.emplace(ctl->realPid());
    frozenAt = std::chrono::steady_clock::now();
    times.mark("freeze");
    remoteBytes = capturePostcopy(*ctl, out, stats, *pages, times, kj::mv(dense));
  } else if (uffd >= 0) {
    tracked = kj::heap<MemberPrecopy>(ctl->realPid(), static_cast<pid_t>(vpid > 0 ? vpid : pid), uffd, out);
    tracked->precopy.runRounds(*tracked->w, resources::PrecopyRule{}, [&]() { out.flush(); });
    out.flush(/*drain=*/true);  // the link is empty when the job stops
    bytesBefore = out.total();
    rounds = tracked->precopy.stats().rounds;
    lookBeforeFreeze();
    frozenAt = std::chrono::steady_clock::now();
    times.mark("freeze");
    control::Reply parked = ctl->freeze(kFreezeTimeoutSeconds);
    times.mark("park");
    kj::Function<void(const char*)> mark = [&](const char* phase) { times.mark(phase); };
    stats = migctl::finishFrozen(*ctl, parked, tracked->memory, tracked->precopy, *tracked->w,
                                 times.on() ? &mark : nullptr);
  } else {
    lookBeforeFreeze();
    frozenAt = std::chrono::steady_clock::now();
    times.mark("freeze");
    resources::waitForLazyPages(ctl->realPid());  // as freezeAndCapture does (waited for above already)
    // With its children born here (away, to another host or home, also one born since
    // the look): parked with it, one image of them all (a tree whose root is the job),
    // unless they all ended meanwhile; then the check after the freeze is as ever.
    if (deputy == nullptr && !only) born.park(*ctl);
    if (born.carry) {
      times.mark("park");
      stats = born.capture(out);
    } else {
      control::Reply parked = ctl->freeze(kFreezeTimeoutSeconds);
      times.mark("park");
      stats = migctl::captureFrozen(*ctl, parked, /*forMigration=*/true, out);
    }
  }
  times.mark("capture");
  // The System V objects the image carries (captured at the freeze), removed here once
  // the hop commits. One a process outside the job began to use since the look above
  // aborts the hop; so does one pre-copy or post-copy would leave behind.
  resources::SysvIpc sysvMoved = resources::findSysvIpc(kj::arrayPtr(&self, 1));
  // (Nothing carried, nothing used outside: the second look is skipped, as a job
  // without System V objects, most jobs, cannot have begun to use one while frozen.)
  KJ_IF_MAYBE(why, sysvMoved.empty() ? nullptr : resources::sysvUsedOutside(kj::arrayPtr(&self, 1))) {
    fail(kj::str("cannot move PID ", pid, ": ", *why, "; the hop was aborted, the job runs on ",
                 deputy != nullptr ? "at home" : "where it was"));
  }
  if (!sysvMoved.empty() && (postcopy || uffd >= 0)) {
    fail(kj::str("cannot move PID ", pid, ": it began to use System V IPC objects as the move began, and they move "
                 "stop-and-copy only; the hop was aborted, the job runs on ", deputy != nullptr ? "at home" : "where it was",
                 "; try again"));
  }
  times.mark("sysv-check");
  // A child forked between the look above and the freeze (a job that forks all the
  // while) would be left behind, losing its parent: the hop is aborted before its
  // commit, so the job resumes here whole and nothing of it runs there.
  // Most jobs have no child at all: known from their own /proc files, not all of /proc.
  const bool childless = resources::surelyChildless(ctl->realPid());
  if (!childless && !only && !born.carry) {
    auto late = lostIfAlone(ctl->realPid(), deputy != nullptr);
    // At home a child started since the look (a shell's next `$(...)`) ends by itself
    // while its frozen parent forks no more; its zombie stays here, the deputy's to reap
    // when the job waits for it. Away it could not stay: refused at once as before.
    if (late.size() > 0 && deputy != nullptr) {
      late = settledLook([&]() { return lostIfAlone(ctl->realPid(), true); }).left;
    }
    if (late.size() > 0) {
      fail(deputy != nullptr ? treeRefusal(vpid > 0 ? vpid : pid, late)
                             : awayChildrenRefusal(vpid > 0 ? vpid : pid, 0, late, false, /*frozen=*/true,
                                                   BornAwayRefused::lateStart));
    }
  } else if (!childless && homecoming && !born.carry) {
    auto late = liveOnly(childrenLeftBehind(ctl->realPid()));
    if (late.size() > 0) fail(homecomingRefusal(vpid > 0 ? vpid : pid, late, /*transient=*/true));
  }
  times.mark("child-check");
  hopFaultPoint("send-frozen", [](kj::String why) { fail(kj::mv(why)); });

  // Phase one is asked right behind the image's last bytes: the connection keeps them
  // in order and the destination checks that the image is complete, so the freeze
  // holds one round trip less. Every write is still waited for before the answer
  // counts (a write that failed aborts the hop). Not for a hop home: there, asked after
  // every byte was taken, one hop home whose checks took 9 s was once aborted by the
  // writes' stall timeout in tests/cluster/postcopy.sh (not understood).
  out.flush();
  kj::Promise<capnp::Response<rpc::ImageSink::DoneResults>> preparing = nullptr;
  if (!homecoming) preparing = out.sink().doneRequest().send();
  out.flush(/*drain=*/true);
  times.mark("drain");
  double transferMs = msSince(frozenAt);
  double sendMs = msSince(sendStartedAt);

  // Phase one: the destination restores up to "ready, not running". A partition here
  // aborts the hop like one during the transfer: the job resumes here.
  if (homecoming) preparing = out.sink().doneRequest().send();
  auto prepared = waitOrStall(kj::mv(preparing), timer, stallMs + kPrepareAllowanceMs,
                              kj::str("hop aborted: the destination ", to, " stopped answering while restoring (",
                                      (stallMs + kPrepareAllowanceMs) / 1000.0, " s); the job runs on ",
                                      deputy != nullptr ? "at home" : "where it was"),
                              ws);
  double restoreMs = prepared.getRestoreMs();
  times.mark("prepare");
  hopFaultPoint("send-prepared", [](kj::String why) { fail(kj::mv(why)); });

  // The commit point: the job is given up here. From now on it may run only there.
  // Post-copy with pages still to send: the job stays here, frozen, as their copy, and
  // stopped (SIGSTOP), so that its shim cannot resume it if this process dies: it
  // becomes the deputy (or exits) once the destination has every page.
  // A hop home: the job stays here, frozen and stopped, until home says that the job it
  // restored into the deputy runs (then it exits here) or that the restore failed with
  // the deputy back (then it resumes here): one live copy either way. Without an answer
  // it stays stopped here rather than risk a second copy.
  const bool keepFrozen = postcopy && remoteBytes > 0;
  kj::Maybe<DeputyReady> ready;
  if (keepFrozen || homecoming) {
    if (kill(ctl->realPid(), SIGSTOP) != 0) fail(kj::str("cannot stop the frozen job: ", strerror(errno)));
    if (born.carry) born.frozen->signalEach(SIGSTOP);  // its children born here, carried home, too
  } else if (deputy != nullptr) {
    // The job's process becomes its deputy before the destination runs the job
    // (deputy_start.h): an exec that fails leaves the job here, to resume; the
    // deputy's registration is waited for after the commit, out of the freeze.
    // The token goes into the deputy's environment (see shim/checkpoint.cc, execDeputy).
    DeputyReady& r = ready.emplace();
    auto idText = kj::str(jobId), tokenEnv = kj::str(kTokenEnv, "=", hex(token)),
         dropText = kj::str(kj::hex(stats.pendingSignals));
    // MIG_FAULT=hop:deputy-exec:error: a program that is not there (the exec really
    // fails); crash: the job's process is killed as it execs (as the OOM killer might).
    const HopFault& f = hopFault();
    auto program = deputyProgram(deputy);
    kj::StringPtr args[] = {program, "--job-id", idText, tokenEnv, "--socket", shadowdSocket,
                            "--drop-signals", dropText, "--ready", r.name()};
    int err = 0;
    if (f.step == "deputy-exec" && f.action == HopFaultAction::CRASH) kill(ctl->realPid(), SIGKILL);
    else err = ctl->tryDeputy(args, kDeputyStartMs);
    if (err != 0) {
      ctl->resume();
      fail(kj::str("the deputy could not start (exec of ", program, ": ", strerror(err),
                   "); the hop was aborted, the job runs on at home"));
    }
  } else if (born.carry) {
    born.frozen->exitEach();  // they run there now, with it
  } else {
    ctl->exitProcess();
  }
  // Said at once: if this process dies now, shadowd still knows the job left here (or,
  // coming home, that it is kept here for home's answer).
  printf(homecoming ? "COMMITTED-HOME\n" : "COMMITTED\n");
  fflush(stdout);
  times.mark("give-up");
  // The destination's now: none left here for a stale use (coming home: once it runs there).
  if (!homecoming) resources::removeSysvIpc(sysvMoved);
  hopFaultPoint("send-committed", [](kj::String why) { fail(kj::mv(why)); });

  // Phase two: the destination lets the job run. If it does not confirm, the job was
  // given up here all the same: said as such, never as a resumed job.
  kj::String homeFailed;
  auto committed = kj::runCatchingExceptions([&]() {
    auto r = waitOrStall(out.sink().commitRequest().send(), timer, stallMs + kPrepareAllowanceMs,
                         kj::str("no answer within ", (stallMs + kPrepareAllowanceMs) / 1000.0, " s"), ws);
    restoreMs += r.getRestoreMs();
    homeFailed = kj::str(r.getHomeFailed());
  });
  if (homecoming && committed == nullptr) {
    if (homeFailed.size() > 0) {
      // Nothing of the job runs at home: it goes on here, as after any failed hop.
      if (born.carry) {
        born.frozen->resume();
        born.frozen->signalEach(SIGCONT);
      } else {
        ctl->resume();
        kill(ctl->realPid(), SIGCONT);
      }
      fprintf(stderr, "hop home failed after its commit: %s; the job runs on where it was\n", homeFailed.cStr());
      return kHomeRestoreFailed;
    }
    // It runs at home (with its children born here, each forked there with its PID).
    if (born.carry) {
      born.frozen->exitEach();
      born.frozen->signalEach(SIGCONT);
    } else {
      ctl->exitProcess();
      kill(ctl->realPid(), SIGCONT);
    }
    resources::removeSysvIpc(sysvMoved);
  }
  KJ_IF_MAYBE(e, committed) {
    if (homecoming) {
      // Home may run the job or may have its deputy back: neither is known here, so
      // the job stays stopped (SIGSTOP; its shim, which sees this connection end, can
      // resume it only once someone sends it SIGCONT).
      fprintf(stderr,
              "no answer to the commit (%s); the job is kept here frozen and stopped, since home may run it: "
              "not resumed\n",
              e->getDescription().cStr());
    } else if (keepFrozen) {
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
  times.mark("commit");
  priority = nullptr;
  times.write();
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
    // The exec was proved before the freeze; one that fails all the same (the program
    // gone since) leaves nobody at home for the job running there: ended, here (the
    // watch on this process ends it there) and by its page server's end.
    auto letGo = [&]() -> int {
      if (deputy == nullptr) {
        ctl->exitProcess();
        kill(ctl->realPid(), SIGCONT);
        return 0;
      }
      DeputyReady& r = ready.emplace();
      auto idText = kj::str(jobId), tokenEnv = kj::str(kTokenEnv, "=", hex(token)),
           dropText = kj::str(kj::hex(stats.pendingSignals));
      auto program = deputyProgram(deputy);
      kj::StringPtr args[] = {program, "--job-id", idText, tokenEnv, "--socket", shadowdSocket,
                              "--drop-signals", dropText, "--ready", r.name()};
      int err = ctl->tryDeputy(args, kDeputyStartMs, /*stopped=*/true);
      if (err == 0) return 0;
      kill(ctl->realPid(), SIGKILL);
      fprintf(stderr,
              "its deputy could not start after the commit (exec of %s: %s): with nobody at home to serve it, the job "
              "was ended on %s and at home, and its parent at home got that end (SIGKILL) as the job's status\n",
              program.cStr(), strerror(err), to);
      return kDeputyDied;
    };
    bool gone = false;  // the job here is the deputy (or ended) by now
    if (copied == nullptr) {
      if (int rc = letGo()) return rc;
      gone = true;
    }
    // This process dying from here on leaves the copy to shadowd (spooled_pages.h).
    hopFaultPoint("send-postcopy", [](kj::String why) { fail(kj::mv(why)); });
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
    // A broken page link does not lose the job: when no page was asked for a while (the
    // link may be cut, or reset), this process logs in to the destination again and hands
    // it the page source anew (Node.resumePages), which asks a waiting request again;
    // tried again after a pause that grows to 2 s, until the watchdog above gives up. A
    // destination that answers but no longer has the job (ended there) ends it here too.
    const uint64_t idleMs = std::clamp<uint64_t>(stallMs / 4, 300, 2000);
    constexpr uint64_t kTryMs = 1000;  // a login that takes longer is a failed try
    constexpr uint64_t kFirstPauseMs = 250, kMaxPauseMs = 2000;
    uint64_t pauseMs = kFirstPauseMs;
    uint32_t failedTries = 0;
    auto lastTry = std::chrono::steady_clock::now() - std::chrono::hours(1);
    kj::Own<PeerLink> again;  // the latest new connection (the first one stays too)
    bool refused = false, unsupported = false;
    kj::Function<kj::Promise<void>()> resumer = [&]() -> kj::Promise<void> {
      return timer.afterDelay(100 * kj::MILLISECONDS).then([&]() -> kj::Promise<void> {
        if (msSince(pages->lastRequest()) < static_cast<double>(idleMs)) {
          pauseMs = kFirstPauseMs;  // pages flow: a later break starts afresh
          failedTries = 0;
          return resumer();
        }
        if (msSince(lastTry) < static_cast<double>(pauseMs)) return resumer();
        lastTry = std::chrono::steady_clock::now();
        return loginToPeer(io, key, linkMode, to, kTryMs)
            .then([&](kj::Own<PeerLink> l) -> kj::Promise<void> {
              auto req = l->node.resumePagesRequest();
              req.setJobId(jobId);
              req.setToken(token);
              req.setSource(KJ_ASSERT_NONNULL(pageSource));
              return req.send().then(
                  [&, l = kj::mv(l)](capnp::Response<rpc::Node::ResumePagesResults>&& r) mutable {
                    again = kj::mv(l);
                    // B has the source again: no new connection before another idle spell.
                    pauseMs = idleMs;
                    failedTries = 0;
                    if (r.getFinished()) pages->markFinished();
                  },
                  [&](kj::Exception&& e) {
                    // FAILED: B answered that it has no transfer of the job (ended there).
                    // UNIMPLEMENTED: an older shadowd, which cannot resume: the first
                    // link is all there is, as before.
                    if (e.getType() == kj::Exception::Type::FAILED) refused = true;
                    if (e.getType() == kj::Exception::Type::UNIMPLEMENTED) unsupported = true;
                    kj::throwFatalException(kj::mv(e));
                  });
            })
            .then([&]() { return resumer(); },
                  [&](kj::Exception&& e) -> kj::Promise<void> {
                    if (refused) fail(kj::str("the destination has no transfer of the job any more (",
                                              e.getDescription(), ")"));
                    if (unsupported) return kj::Promise<void>(kj::NEVER_DONE);
                    pauseMs = failedTries++ == 0 ? kFirstPauseMs : std::min(pauseMs * 2, kMaxPauseMs);
                    return resumer();
                  });
      });
    };
    auto lost = kj::runCatchingExceptions(
        [&]() { finished.promise.exclusiveJoin(watchdog()).exclusiveJoin(resumer()).wait(ws); });
    bytesAfter = pages->sent();
    pages->dropCopy();
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
    if (!gone) {
      if (int rc = letGo()) return rc;
    }
  }
  // The deputy registered with shadowd, or lives and goes on trying (as with a
  // restarted shadowd). One that died first (killed as it started: its trial start
  // and exec went well) leaves nobody at home: home's shadowd, which watches the
  // process, ends the job there (local_service.cc watchDeputy); said, not "migrated".
  KJ_IF_MAYBE(r, ready) {
    if (r->wait(ctl->realPid(), kDeputyStartMs) == DeputyReady::Outcome::DIED) {
      fprintf(stderr,
              "its process at home ended as it became its deputy, before it registered with shadowd: with nobody at home "
              "to serve it, the job is ended on %s too, and its parent at home got that end as the job's status\n",
              to);
      return kDeputyDied;
    }
  }
  printf("MIGRATED %.3f %llu %.3f %.3f %s %llu %llu %u %llu %.3f\n", freezeMs,
         static_cast<unsigned long long>(out.total() + bytesAfter), transferMs, restoreMs,
         postcopy ? "post-copy" : uffd >= 0 ? "pre-copy" : "stop-and-copy", static_cast<unsigned long long>(bytesBefore),
         static_cast<unsigned long long>(out.total() - bytesBefore), rounds, static_cast<unsigned long long>(bytesAfter),
         sendMs);
  if (uffd < 0 && mode == nullptr) printf("%s\n", whyNot.cStr());
  if (modeNote.size() > 0) printf("%s\n", modeNote.cStr());
  if (sysvNote.size() > 0) printf("%s\n", sysvNote.cStr());
  if (bornNote.size() > 0) printf("%s\n", bornNote.cStr());
  return 0;
}

}  // namespace mig::shadow
