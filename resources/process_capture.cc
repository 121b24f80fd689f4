// See process_capture.h.
#include "resources/process_capture.h"

#include "image/host_facts.h"
#include "image/image_error.h"
#include "image/writer.h"
#include "resources/copy_before_write.h"
#include "resources/fd_capture.h"
#include "resources/memory.h"
#include "resources/process_attrs.h"
#include "resources/proc_file.h"
#include "resources/shared_memory.h"
#include "resources/sysv_ipc.h"
#include "resources/threads.h"

#include <capnp/message.h>
#include <kj/io.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <set>
#include <algorithm>
#include <atomic>
#include <thread>
#include <utility>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace mig::resources {

namespace {

// work(0) .. work(n - 1) on as many threads as there are CPUs, this one among them: a
// frozen tree's per-member work, mostly reading /proc, that the tree waits for whole
// (one after the other, on a busy machine, they would get one share of a CPU for all).
// The first failure is thrown once every thread is done.
void onEveryCpu(size_t n, kj::FunctionParam<void(size_t)> work) {
  auto failed = kj::heapArray<kj::Maybe<kj::Exception>>(n);
  std::atomic<size_t> next{0};
  auto run = [&]() {
    for (size_t i; (i = next.fetch_add(1)) < n;) failed[i] = kj::runCatchingExceptions([&]() { work(i); });
  };
  const size_t cpus = std::max(1u, std::thread::hardware_concurrency());
  kj::Vector<std::thread> threads;
  for (size_t t = 1; t < std::min(n, cpus); ++t) threads.add(run);
  run();
  for (auto& t : threads) t.join();
  for (auto& f : failed) {
    KJ_IF_MAYBE(e, f) kj::throwFatalException(kj::mv(*e));
  }
}

void checkBlock(pid_t pid, const control::Block& block) {
  if (block.magic != control::kMagic || block.version != control::kVersion) {
    image::fail(kj::str("process ", pid, " runs an incompatible libmig (checkpoint block version ", block.version, ")"));
  }
}

// The pipes between a tree's members: held by two members or more, with a read end
// and a write end among them; FIFOs (named pipes) too, with their path. Their bytes are taken out through one member's read
// end and put straight back through a write end (every member is parked: nobody
// else reads or writes), so the tree keeps them and the image has one copy.
struct PipeEnd {
  pid_t pid;
  int fd;
  bool read;
};

// fds[i]: member i's fds (probeFiles; none for a zombie).
void captureTreePipes(kj::ArrayPtr<const TreeCaptureMember> members, kj::ArrayPtr<const std::vector<FdProbe>> fds,
                      std::set<uint64_t>& ids, image::schema::Tree::Builder tree) {
  std::map<uint64_t, std::vector<PipeEnd>> ends;
  std::map<uint64_t, std::string> fifos;  // inode -> path ("" once removed)
  for (size_t i = 0; i < members.size(); ++i) {
    for (const FdProbe& f : fds[i]) {
      unsigned long long ino = 0;
      if (f.target[0] == '/') {
        if (!S_ISFIFO(f.st.st_mode)) continue;
        ino = f.st.st_ino;
        fifos[ino] = f.deleted ? "" : f.target;
      } else if (sscanf(f.target.c_str(), "socket:[%llu]", &ino) == 1) {
        ids.insert(kTreeSocket | ino);  // a socketpair end another member may hold the peer of
        continue;
      } else if (sscanf(f.target.c_str(), "pipe:[%llu]", &ino) != 1) {
        continue;
      }
      ends[ino].push_back(PipeEnd{members[i].proc.pid, f.fd, (f.flags & O_ACCMODE) == O_RDONLY});
    }
  }
  kj::Vector<std::pair<uint64_t, const std::vector<PipeEnd>*>> shared;
  for (auto& [ino, list] : ends) {
    bool reader = false, writer = false, twoMembers = false;
    for (auto& e : list) {
      reader = reader || e.read;
      writer = writer || !e.read;
      twoMembers = twoMembers || e.pid != list[0].pid;
    }
    if (reader && writer && twoMembers) shared.add(ino, &list);
  }
  auto out = tree.initPipes(static_cast<unsigned>(shared.size()));
  for (size_t i = 0; i < shared.size(); ++i) {
    const uint64_t ino = shared[i].first;
    const std::vector<PipeEnd>& list = *shared[i].second;
    const PipeEnd* r = nullptr;
    const PipeEnd* w = nullptr;
    for (auto& e : list) {
      if (e.read && r == nullptr) r = &e;
      if (!e.read && w == nullptr) w = &e;
    }
    auto link = [](const PipeEnd* e) { return "/proc/" + std::to_string(e->pid) + "/fd/" + std::to_string(e->fd); };
    kj::AutoCloseFd rfd(::open(link(r).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (rfd == nullptr) image::fail(kj::str("cannot open the pipe of fd ", r->fd, " of process ", r->pid, ": ", strerror(errno)));
    std::string data;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(rfd, buf, sizeof(buf))) > 0) data.append(buf, static_cast<size_t>(n));
    int capacity = fcntl(rfd, F_GETPIPE_SZ);
    if (!data.empty()) {
      kj::AutoCloseFd wfd(::open(link(w).c_str(), O_WRONLY | O_CLOEXEC));
      if (wfd == nullptr || ::write(wfd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
        image::fail(kj::str("could not put back ", data.size(), " bytes into the pipe between processes ", r->pid,
                            " and ", w->pid));
      }
    }
    auto p = out[static_cast<unsigned>(i)];
    p.setId(ino);
    p.setContents(kj::arrayPtr(reinterpret_cast<const kj::byte*>(data.data()), data.size()));
    p.setCapacity(capacity > 0 ? static_cast<uint32_t>(capacity) : 0);
    auto fifo = fifos.find(ino);
    if (fifo != fifos.end()) p.setFifo(fifo->second.c_str());
    ids.insert(ino);
  }
}

// The ipc section (image.capnp Ipc), when there is anything to put in it: the
// tree's shared objects' contents, then the SysV segments', as the offsets say.
void writeIpc(image::ImageWriter& w, kj::ArrayPtr<const SharedObject> shared, const SysvIpc& sysv) {
  if (shared.size() == 0 && sysv.empty()) return;
  capnp::MallocMessageBuilder ipcMsg;
  auto ipc = ipcMsg.initRoot<image::schema::Ipc>();
  uint64_t dataBytes = 0;
  setSharedMemory(shared, ipc.initSharedMemory(static_cast<unsigned>(shared.size())), dataBytes);
  setSysvIpc(sysv, ipc, dataBytes);
  w.beginData(image::SectionType::ipc, ipcMsg, dataBytes);
  writeSharedMemoryData(shared, w);
  writeSysvData(sysv, w);
  w.endData();
}

kj::Vector<int32_t> segmentIds(const SysvIpc& sysv) {
  kj::Vector<int32_t> ids;
  for (auto& s : sysv.shm) ids.add(s.perm.id);
  return ids;
}

}  // namespace

void fillJobHeader(image::schema::Header::Builder out, pid_t pid, int32_t vpid) {
  image::fillHeader(out, 0, vpid, readProcFile(pid, "cmdline").c_str());
  image::fillOwner(out, pid);
}

CaptureStats captureProcess(pid_t pid, const control::Block& block, PageSource& memory, image::ByteSink& out,
                            const CaptureOptions& options) {
  CaptureStats stats{};
  checkBlock(pid, block);
  capnp::MallocMessageBuilder header;
  fillJobHeader(header.initRoot<image::schema::Header>(), pid, block.vpid);
  image::ImageWriter w(out, header);
  captureProcessInto(pid, block, memory, w, nullptr, stats, options);
  return stats;
}

void captureProcessState(pid_t pid, const control::Block& block, image::ImageWriter& w, CaptureStats& stats,
                         const CaptureOptions& options) {
  checkBlock(pid, block);
  writeProcess(pid, block, w, stats);
  writeThreads(pid, block, w, stats);
  writeFiles(pid, block, w, stats, options);
}

void captureProcessInto(pid_t pid, const control::Block& block, PageSource& memory, image::ImageWriter& w,
                        const PageRangeSet* held, CaptureStats& stats, const CaptureOptions& options) {
  // A migration takes them too (send_command.cc refused those a process outside the
  // job uses, before the freeze, and removes them here once the hop commits). A
  // concurrent or periodic checkpoint of a job holding some is taken this way too
  // (checkpoint_command.cc, periodic_checkpoint.cc).
  SysvIpc sysv = findSysvIpc(kj::arrayPtr(&pid, 1));
  writeIpc(w, nullptr, sysv);
  kj::Vector<int32_t> segments = segmentIds(sysv);
  WithoutSharedViews own(memory, nullptr, pid, segments);
  captureProcessState(pid, block, w, stats, options);
  if (options.mark != nullptr) (*options.mark)("state");
  writeMemory(own, w, stats, held);
  if (options.mark != nullptr) (*options.mark)("memory");
  w.finish();
  stats.imageBytes = w.bytesWritten();
}

namespace {

// What a tree's members are written with, once the sections before them are.
struct TreeStart {
  std::set<uint64_t> pipeIds;  // the tree's pipes: not the members' own fds
  kj::Vector<SharedObject> shared;
  kj::Vector<int32_t> segments;
  kj::Array<std::vector<FdProbe>> fds;  // each member's (probeFiles; none for a zombie)
};

// The sections before the members: the tree (its members, its pipes with their
// bytes) and the ipc section (what members share, with its contents). What they are
// made of is read from every member at once, on every CPU (onEveryCpu): each member's
// fds (the pipes between members are found in them, and its files section is written
// from them later), the shared memory and System V objects of all; `alsoEach(i)`:
// the caller's own work on live member i, done on the same threads meanwhile.
TreeStart writeTreeStart(kj::ArrayPtr<const TreeCaptureMember> members, image::ImageWriter& w,
                         kj::FunctionParam<void(size_t)> alsoEach) {
  KJ_REQUIRE(members.size() > 0 && members[0].block != nullptr, "a tree needs a live root");
  // Kernel PID -> virtual PID: a member restored before answers to the PID it had
  // first; a zombie (no shim to ask) keeps its kernel PID.
  auto virtualOf = [&](pid_t real) -> pid_t {
    for (auto& m : members) {
      if (m.proc.pid == real) return m.block != nullptr ? m.block->vpid : real;
    }
    return real;
  };
  const TreeCaptureMember& root = members[0];
  TreeStart start;
  start.fds = kj::heapArray<std::vector<FdProbe>>(members.size());
  kj::Vector<pid_t> live;
  for (auto& m : members) {
    if (m.block != nullptr) live.add(m.proc.pid);
  }
  SysvIpc sysv;
  // The shim's sockets of the root's network namespace (migSocketInodes), read once for
  // the members in it: its /proc/PID/net/unix lists every Unix socket of the namespace,
  // a quarter of a small member's state.
  auto netOf = [](pid_t pid, struct stat& st) {
    return stat(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), &st) == 0;
  };
  struct stat rootNet {};
  const bool rootNetKnown = netOf(root.proc.pid, rootNet);
  std::once_flag migSocketsRead;
  std::set<uint64_t> migSockets;
  onEveryCpu(2 + members.size(), [&](size_t i) {
    if (i == 0) {
      start.shared = findTreeSharedMemory(members);
    } else if (i == 1) {
      sysv = findSysvIpc(live);
    } else if (const TreeCaptureMember& m = members[i - 2]; m.block != nullptr) {
      struct stat net {};
      const bool rootsNet = rootNetKnown && netOf(m.proc.pid, net) && net.st_dev == rootNet.st_dev &&
                            net.st_ino == rootNet.st_ino;
      if (rootsNet) std::call_once(migSocketsRead, [&]() { migSockets = migSocketInodes(root.proc.pid); });
      start.fds[i - 2] = probeFiles(m.proc.pid, *m.block, rootsNet ? &migSockets : nullptr);
      alsoEach(i - 2);
    }
  });
  capnp::MallocMessageBuilder treeMsg;
  auto treeRoot = treeMsg.initRoot<image::schema::Tree>();
  captureTreePipes(members, start.fds, start.pipeIds, treeRoot);
  auto list = treeRoot.initMembers(static_cast<unsigned>(members.size()));
  for (size_t i = 0; i < members.size(); ++i) {
    const TreeCaptureMember& m = members[i];
    auto r = list[static_cast<unsigned>(i)];
    r.setVpid(virtualOf(m.proc.pid));
    r.setVppid(i == 0 ? root.block->vppid : virtualOf(m.proc.ppid));
    r.setPgid(virtualOf(m.proc.pgid));
    r.setSid(virtualOf(m.proc.sid));
    r.setZombie(m.block == nullptr);
    r.setWaitStatus(m.block == nullptr ? m.proc.waitStatus : 0);
    r.setCommand(m.proc.command.c_str());
    r.setRealPid(m.proc.pid);
  }
  w.section(image::SectionType::tree, treeMsg);
  writeIpc(w, start.shared, sysv);
  start.segments = segmentIds(sysv);
  return start;
}

// A tree's image up to its members: every live member's shim checked, the job's
// header (the root's), then the sections before the members (writeTreeStart).
struct TreeImage {
  TreeImage(kj::ArrayPtr<const TreeCaptureMember> members, image::ByteSink& out,
            kj::FunctionParam<void(size_t)> alsoEach)
      : writer(out, checkedHeader(members, header)), start(writeTreeStart(members, writer, alsoEach)) {}
  static capnp::MessageBuilder& checkedHeader(kj::ArrayPtr<const TreeCaptureMember> members,
                                              capnp::MallocMessageBuilder& msg) {
    for (auto& m : members) {
      if (m.block != nullptr) checkBlock(m.proc.pid, *m.block);
    }
    fillJobHeader(msg.initRoot<image::schema::Header>(), members[0].proc.pid, members[0].block->vpid);
    return msg;
  }
  capnp::MallocMessageBuilder header;
  image::ImageWriter writer;
  TreeStart start;
};

// A live member's sections but its files and memory: its `member` section, then its
// process and threads. (The kinds set their counts for one process; a tree's are
// the sums.)
void writeMemberHead(const TreeCaptureMember& m, image::ImageWriter& w, CaptureStats& stats) {
  capnp::MallocMessageBuilder memberMsg;
  memberMsg.initRoot<image::schema::Member>().setVpid(m.block->vpid);
  w.section(image::SectionType::member, memberMsg);
  const uint32_t threads = stats.threads;
  writeProcess(m.proc.pid, *m.block, w, stats);
  writeThreads(m.proc.pid, *m.block, w, stats);
  stats.threads += threads;
}

// Then its files section, from the fds taken at the tree's start.
void writeMemberFiles(const TreeCaptureMember& m, const std::vector<FdProbe>& fds, const TreeStart& start,
                      image::ImageWriter& w, CaptureStats& stats, const CaptureOptions& options) {
  const uint32_t count = stats.fds;
  writeFiles(m.proc.pid, *m.block, w, stats, options, &start.pipeIds, &fds);
  stats.fds += count;
}

}  // namespace

CaptureStats captureTree(kj::ArrayPtr<const TreeCaptureMember> members, image::ByteSink& out,
                         const CaptureOptions& options) {
  CaptureStats stats{};
  TreeImage image(members, out, [](size_t) {});
  image::ImageWriter& w = image.writer;
  const TreeStart& start = image.start;
  for (size_t i = 0; i < members.size(); ++i) {
    const TreeCaptureMember& m = members[i];
    if (m.block == nullptr) continue;
    writeMemberHead(m, w, stats);
    writeMemberFiles(m, start.fds[i], start, w, stats, options);
    ProcPageSource own(m.proc.pid, options.forMigration);  // (a tree that migrates: its children born away)
    WithoutSharedViews memory(own, start.shared, m.proc.pid, start.segments);
    writeMemory(memory, w, stats, nullptr, nullptr, /*sparse=*/false);
  }
  w.finish();
  stats.imageBytes = w.bytesWritten();
  return stats;
}

ConcurrentTreeResult captureTreeConcurrently(kj::ArrayPtr<const TreeCaptureMember> members, kj::ArrayPtr<int> uffds,
                                             image::ByteSink& out, const CaptureOptions& options,
                                             kj::FunctionParam<void()> resume) {
  ConcurrentTreeResult result;
  // Frozen: every member's state, held until its place in the image, and its memory
  // write-protected (what members share is in the ipc section already, taken now),
  // each the work of one process's concurrent checkpoint, on every CPU: its head
  // while the tree's start is read, its files and write-protection after it.
  struct Later {
    int uffd = -1;  // until its copier takes it
    CaptureStats stats{};
    image::HeldSections state;
    kj::Own<ProcPageSource> own;
    kj::Own<WithoutSharedViews> memory;
    kj::Own<CopyBeforeWrite> pages;
  };
  auto later = kj::heapArray<Later>(members.size());  // by member; a zombie's stays empty
  for (size_t i = 0; i < members.size(); ++i) later[i].uffd = uffds[i];
  KJ_DEFER(for (Later& l : later) if (l.uffd >= 0) close(l.uffd));  // its copier was not made: a member failed
  TreeImage image(members, out, [&](size_t i) {
    image::ImageWriter keep(later[i].state);
    writeMemberHead(members[i], keep, later[i].stats);
  });
  image::ImageWriter& w = image.writer;
  const TreeStart& start = image.start;
  if (options.mark != nullptr) (*options.mark)("tree-start");
  onEveryCpu(members.size(), [&](size_t i) {
    const TreeCaptureMember& m = members[i];
    if (m.block == nullptr) return;
    Later& l = later[i];
    image::ImageWriter keep(l.state);
    writeMemberFiles(m, start.fds[i], start, keep, l.stats, options);
    l.own = kj::heap<ProcPageSource>(m.proc.pid);
    l.memory = kj::heap<WithoutSharedViews>(*l.own, start.shared, m.proc.pid, start.segments);
    l.pages = kj::heap<CopyBeforeWrite>(m.proc.pid, std::exchange(l.uffd, -1), *l.memory);
  });
  for (Later& l : later) {
    result.stats.threads += l.stats.threads;
    result.stats.fds += l.stats.fds;
    result.stats.pendingSignals |= l.stats.pendingSignals;
    for (auto& warning : l.stats.warnings) result.stats.warnings.add(kj::mv(warning));
    for (int fd : l.stats.connections) result.stats.connections.add(fd);
  }
  if (options.mark != nullptr) (*options.mark)("state-protect");
  resume();
  if (options.mark != nullptr) (*options.mark)("resume");
  for (Later& l : later) {
    if (l.pages.get() == nullptr) continue;  // a zombie
    w.write(l.state);
    writeMemory(*l.pages, w, result.stats, nullptr, nullptr, /*sparse=*/false);
    kj::String why;
    if (!l.pages->finish(why) && result.why.size() == 0) result.why = kj::mv(why);
    const CopyBeforeWriteStats& s = l.pages->stats();
    result.pages.protectedPages += s.protectedPages;
    result.pages.frozenPages += s.frozenPages;
    result.pages.faultCopies += s.faultCopies;
    l.pages = nullptr;  // its fault thread and protection go as soon as it is written
  }
  result.ok = result.why.size() == 0;
  if (!result.ok) return result;
  w.finish();
  result.stats.imageBytes = w.bytesWritten();
  return result;
}

}  // namespace mig::resources
