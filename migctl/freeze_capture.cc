// See freeze_capture.h.
#include "migctl/freeze_capture.h"

#include "image/host_facts.h"
#include "image/image_error.h"
#include "resources/memory.h"
#include "resources/lazy_pages.h"
#include "resources/page_source.h"
#include "resources/proc_file.h"
#include "resources/process_tree.h"

#include <kj/io.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <utility>

namespace mig::migctl {

resources::CaptureStats freezeAndCapture(ControlClient& ctl, int timeoutSeconds, bool forMigration,
                                     image::ByteSink& out, uint64_t maxDeletedFileBytes) {
  resources::waitForLazyPages(ctl.realPid());  // pages a lazy restart has not placed would be lost
  control::Reply reply = ctl.freeze(timeoutSeconds);
  return captureFrozen(ctl, reply, forMigration, out, maxDeletedFileBytes);
}

resources::CaptureStats captureFrozen(ControlClient& ctl, const control::Reply& reply, bool forMigration,
                                      image::ByteSink& out, uint64_t maxDeletedFileBytes) {
  // Through /proc, the process's memory as the kernel sees it (works on any
  // mapping, also unreadable ones).
  resources::ProcPageSource memory(ctl.realPid(), forMigration);
  if (reply.blockSize != sizeof(control::Block)) {
    image::fail(kj::str("process ", ctl.pid(), " runs an incompatible libmig (block size ", reply.blockSize, ")"));
  }
  auto block = kj::heap<control::Block>();
  memory.read(reply.blockAddr, block.get(), sizeof(control::Block));
  resources::CaptureOptions options;
  options.forMigration = forMigration;
  options.maxDeletedFileBytes = maxDeletedFileBytes;
  return resources::captureProcess(ctl.realPid(), *block, memory, out, options);
}

ConcurrentResult freezeAndCaptureConcurrently(ControlClient& ctl, int timeoutSeconds, int uffd, image::ByteSink& out,
                                              uint64_t maxDeletedFileBytes, kj::Function<void(const char*)>* mark) {
  kj::AutoCloseFd owned(uffd);  // until the copier takes it
  ConcurrentResult result;
  {
    resources::ProcPageSource running(ctl.realPid());
    result.madeHugeBytes = resources::collapseForProtection(ctl.realPid(), running);
  }
  auto t0 = std::chrono::steady_clock::now();
  if (mark != nullptr) (*mark)("freeze");
  control::Reply reply = ctl.freeze(timeoutSeconds);
  if (mark != nullptr) (*mark)("park");
  resources::ProcPageSource memory(ctl.realPid());
  if (reply.blockSize != sizeof(control::Block)) {
    image::fail(kj::str("process ", ctl.pid(), " runs an incompatible libmig (block size ", reply.blockSize, ")"));
  }
  auto block = kj::heap<control::Block>();
  memory.read(reply.blockAddr, block.get(), sizeof(control::Block));
  resources::CaptureOptions options;
  options.maxDeletedFileBytes = maxDeletedFileBytes;
  capnp::MallocMessageBuilder header;
  resources::fillJobHeader(header.initRoot<image::schema::Header>(), ctl.realPid(), block->vpid);
  image::ImageWriter w(out, header);
  resources::captureProcessState(ctl.realPid(), *block, w, result.stats, options);
  if (mark != nullptr) (*mark)("state");
  resources::CopyBeforeWrite pages(ctl.realPid(), owned.release(), memory);
  if (mark != nullptr) (*mark)("protect");
  ctl.resume();
  if (mark != nullptr) (*mark)("resume");
  result.frozenMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  resources::writeMemory(pages, w, result.stats);
  result.ok = pages.finish(result.why);
  result.pages = pages.stats();
  if (!result.ok) return result;
  w.finish();
  result.stats.imageBytes = w.bytesWritten();
  return result;
}

resources::CaptureStats freezeAndFinish(ControlClient& ctl, int timeoutSeconds, resources::PageSource& memory,
                                        resources::Precopy& precopy, image::ImageWriter& w) {
  return finishFrozen(ctl, ctl.freeze(timeoutSeconds), memory, precopy, w);
}

resources::CaptureStats finishFrozen(ControlClient& ctl, const control::Reply& reply, resources::PageSource& memory,
                                     resources::Precopy& precopy, image::ImageWriter& w,
                                     kj::Function<void(const char*)>* mark) {
  if (reply.blockSize != sizeof(control::Block)) {
    image::fail(kj::str("process ", ctl.pid(), " runs an incompatible libmig (block size ", reply.blockSize, ")"));
  }
  auto block = kj::heap<control::Block>();
  memory.read(reply.blockAddr, block.get(), sizeof(control::Block));
  precopy.finalScan();
  if (mark != nullptr) (*mark)("final-look");
  resources::CaptureStats stats{};
  resources::CaptureOptions options;
  options.forMigration = true;  // pre-copy is a migration's
  options.mark = mark;
  resources::captureProcessInto(ctl.realPid(), *block, memory, w, &precopy.held(), stats, options);
  return stats;
}

}  // namespace mig::migctl

namespace mig::migctl {

namespace {

bool listed(const kj::Vector<resources::TreeProcess>& v, pid_t pid) {
  for (auto& p : v) if (p.pid == pid) return true;
  return false;
}

}  // namespace

// A process whose shim is on its way: forked a moment ago (the shim's fork handler
// starts its control thread) or exec'ing (the new program's shim starts it).
bool shimLoaded(pid_t pid) {
  std::string maps;
  return resources::readProcFileIfExists(pid, "maps", maps) && maps.find("libmig.so") != std::string::npos;
}

// The shim of tree member `p`; null when `p` ended meanwhile. A member between fork
// and exec, or in exec, has no control socket for a moment: wait for it (bounded),
// longer when the shim is mapped already.
kj::Own<ControlClient> FrozenTree::reach(const resources::TreeProcess& p) {
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    try {
      return kj::heap<ControlClient>(p.pid);
    } catch (const kj::Exception& e) {
      if (!resources::processRuns(p.pid)) return {};
      auto waited = std::chrono::steady_clock::now() - start;
      if (waited > std::chrono::milliseconds(shimLoaded(p.pid) ? 2000 : 100)) {
        image::fail(kj::str("cannot checkpoint the tree of process ", root_, ": its member ", p.pid, " (",
                            p.command.c_str(), "): ", e.getDescription(),
                            "; every process of a tree must run under libmig.so (a static binary cannot); "
                            "nothing was frozen, the job goes on (--only takes process ", root_, " alone)"));
      }
      usleep(1000);
    }
  }
}

void FrozenTree::connect(const resources::TreeProcess& p, ControlClient* rootCtl) {
  Member m{p, rootCtl, {}, {}};
  if (!p.zombie && rootCtl == nullptr) {
    m.owned = reach(p);
    m.ctl = m.owned.get();
    if (m.ctl == nullptr) m.proc.zombie = true;  // ended: a zombie, or gone (dropped later)
  }
  members_.add(kj::mv(m));
}

// Asks member `m` to freeze; one that exec'd since it was reached is reached again.
void FrozenTree::request(Member& m) {
  try {
    m.ctl->requestFreeze();
  } catch (const kj::Exception&) {
    if (m.ctl == members_[0].ctl) throw;
    m.owned = reach(m.proc);  // ended (null), or exec'ing: its shim comes back
    m.ctl = m.owned.get();
    if (m.ctl == nullptr) {
      m.proc.zombie = true;
      return;
    }
    m.ctl->requestFreeze();
  }
}

// Parks member `m` whose freeze was asked for; a member that ended meanwhile becomes
// a zombie of the tree, one that exec'd (its shim restarted) is asked again.
void FrozenTree::park(Member& m, int timeoutSeconds) {
  for (int attempt = 0;; ++attempt) {
    try {
      control::Reply reply = m.ctl->awaitFreeze(timeoutSeconds);
      if (reply.blockSize != sizeof(control::Block)) {
        image::fail(kj::str("process ", m.proc.pid, " runs an incompatible libmig (block size ", reply.blockSize, ")"));
      }
      m.block = kj::heap<control::Block>();
      resources::ProcPageSource memory(m.proc.pid);
      memory.read(reply.blockAddr, m.block.get(), sizeof(control::Block));
      return;
    } catch (const kj::Exception& e) {
      if (m.ctl == members_[0].ctl || attempt == 3) throw;
      if (!resources::processRuns(m.proc.pid)) {
        m.ctl = nullptr;
        m.owned = nullptr;
        m.proc.zombie = true;
        return;
      }
      m.owned = reach(m.proc);
      m.ctl = m.owned.get();
      if (m.ctl == nullptr) {
        m.proc.zombie = true;
        return;
      }
      m.ctl->requestFreeze();
    }
  }
}

// The tree as it is now, once its members are parked: from their own children lists
// (resources::listFrozenTree), not every process on the host (listTree: tens of ms on a
// busy one, inside the freeze); listTree when that is unsure (a child forked before
// its parent parked may still fork or reap).
namespace {
kj::Vector<resources::TreeProcess> parkedTreeNow(pid_t root) {
  KJ_IF_MAYBE(t, resources::listFrozenTree(root)) return kj::mv(*t);
  return resources::listTree(root);
}
}  // namespace

FrozenTree::FrozenTree(ControlClient& root, int timeoutSeconds, kj::Function<void(const char*)>* mark)
    : root_(root.pid()) {
  resources::waitForLazyPages(root.realPid());  // its page server also fills its children
  auto tree = resources::listTree(root.realPid());
  connect(tree[0], &root);
  for (size_t i = 1; i < tree.size(); ++i) connect(tree[i], nullptr);
  if (single()) return;
  froze_ = true;
  frozenAt_ = std::chrono::steady_clock::now();
  if (mark != nullptr) (*mark)("freeze");
  // Park every member, then look again: a child forked before its parent parked is
  // parked too (a parked process forks no more, so this ends).
  size_t frozen = 0;
  kj::Vector<resources::TreeProcess> now;  // the last look, once every member is parked
  for (int round = 0;; ++round) {
    for (size_t i = frozen; i < members_.size(); ++i) {
      if (members_[i].ctl != nullptr) request(members_[i]);
    }
    for (size_t i = frozen; i < members_.size(); ++i) {
      if (members_[i].ctl != nullptr) park(members_[i], timeoutSeconds);
    }
    frozen = members_.size();
    now = parkedTreeNow(root.realPid());
    kj::Vector<resources::TreeProcess> fresh;
    for (auto& p : now) {
      bool known = false;
      for (auto& m : members_) {
        if (m.proc.pid != p.pid) continue;
        known = true;
        if (p.zombie && m.ctl != nullptr) {
          // It ended before it parked: the freeze would have failed, so it cannot be here.
          image::fail(kj::str("member ", p.pid, " of the tree of process ", root_, " ended while the tree was frozen; try again"));
        }
      }
      if (!known) fresh.add(p);
    }
    for (auto& m : members_) {
      if (!listed(now, m.proc.pid)) {
        // A zombie reaped by its parent before that parent parked: no longer a member.
        if (m.ctl == nullptr) continue;
        image::fail(kj::str("member ", m.proc.pid, " of the tree of process ", root_, " disappeared while the tree was frozen; try again"));
      }
    }
    if (fresh.size() == 0) break;
    if (round == 8) image::fail(kj::str("the tree of process ", root_, " kept growing while it was frozen; try again"));
    for (auto& p : fresh) connect(p, nullptr);
  }
  if (mark != nullptr) (*mark)("park");
  // Zombies reaped while the rest parked are not members any more (the last look,
  // taken with every member parked, is the tree as it holds still: nobody reaps now).
  kj::Vector<Member> kept;
  for (auto& m : members_) {
    if (m.ctl != nullptr || listed(now, m.proc.pid)) kept.add(kj::mv(m));
  }
  members_ = kj::mv(kept);
  // Everything as it is now that the tree holds still: groups, sessions and names
  // may have changed since the first look (setpgid, exec), and zombies' statuses.
  for (auto& m : members_) {
    for (auto& p : now) {
      if (p.pid != m.proc.pid) continue;
      m.proc = p;
      if (m.ctl != nullptr) m.proc.zombie = false;
    }
  }
  if (mark != nullptr) (*mark)("look");
}

size_t FrozenTree::liveCount() const {
  size_t n = 0;
  for (auto& m : members_) n += m.ctl != nullptr;
  return n;
}

resources::CaptureStats FrozenTree::capture(image::ByteSink& out, const resources::CaptureOptions& options) {
  if (members_.size() == 1) {
    // Its children ended (and were reaped) while it froze: the image of one process.
    resources::ProcPageSource memory(members_[0].proc.pid);
    return resources::captureProcess(members_[0].proc.pid, *members_[0].block, memory, out, options);
  }
  kj::Vector<resources::TreeCaptureMember> list;
  for (auto& m : members_) list.add(resources::TreeCaptureMember{m.proc, m.block.get()});
  return resources::captureTree(list, out, options);
}

kj::Maybe<resources::ConcurrentTreeResult> FrozenTree::captureConcurrently(
    image::ByteSink& out, const resources::CaptureOptions& options, std::map<pid_t, int>& uffds,
    std::chrono::steady_clock::time_point& resumedAt) {
  KJ_DEFER({
    for (auto& entry : uffds) if (entry.second >= 0) close(entry.second);
    uffds.clear();
  });
  if (members_.size() == 1) return nullptr;  // its children ended meanwhile: capture() takes one process
  for (auto& m : members_) {
    if (m.ctl == nullptr) continue;
    auto it = uffds.find(m.proc.pid);
    if (it == uffds.end() || it->second < 0) return nullptr;
  }
  kj::Vector<resources::TreeCaptureMember> list;
  kj::Vector<int> fds;  // each taken out of `uffds`: the capture owns it now
  for (auto& m : members_) {
    list.add(resources::TreeCaptureMember{m.proc, m.block.get()});
    fds.add(m.ctl == nullptr ? -1 : std::exchange(uffds[m.proc.pid], -1));
  }
  return resources::captureTreeConcurrently(list, fds, out, options, [&]() {
    resume();
    resumedAt = std::chrono::steady_clock::now();
  });
}

void FrozenTree::resume() {
  for (auto& m : members_) {
    if (m.ctl != nullptr) m.ctl->resume();
  }
}

void FrozenTree::exitEach() {
  for (size_t i = members_.size(); i-- > 0;) {
    if (members_[i].ctl != nullptr) members_[i].ctl->exitProcess();
  }
}

void FrozenTree::signalEach(int sig) {
  for (auto& m : members_) {
    if (m.ctl != nullptr) kill(m.ctl->realPid(), sig);
  }
}

void FrozenTree::exitAll(int timeoutSeconds) {
  exitEach();
  for (size_t i = members_.size(); i-- > 0;) {
    if (members_[i].ctl == nullptr) continue;
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, members_[i].ctl->realPid(), 0));
    if (pidfd < 0) continue;
    struct pollfd p = {pidfd, POLLIN, 0};
    int ready = poll(&p, 1, timeoutSeconds * 1000);
    close(pidfd);
    if (ready == 0) image::fail(kj::str("process ", members_[i].proc.pid, " did not end after the checkpoint"));
  }
  // The members below the root end as zombies that init (or a subreaper) reaps once
  // their parents are gone; a restart needs their PIDs free, so wait (bounded) until
  // they are reaped. The root is its parent's to reap.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSeconds);
  for (size_t i = 1; i < members_.size(); ++i) {
    while (resources::processExists(members_[i].proc.pid)) {
      if (std::chrono::steady_clock::now() > deadline) {
        image::fail(kj::str("process ", members_[i].proc.pid, " ended after the checkpoint but nobody reaped it"));
      }
      usleep(2000);
    }
  }
}

}  // namespace mig::migctl
