// See process_capture.h.
#include "image/pending_siginfo.h"
#include "image/process_capture.h"

#include "image/event_capture.h"
#include "image/host_facts.h"
#include "image/image_error.h"
#include "image/proc_file.h"
#include "image/writer.h"

#include <capnp/message.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace mig::image {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMaxSavedFileBytes = 256ull << 20;  // deleted files kept in the image
constexpr size_t kCopyChunk = 4u << 20;

std::string readLink(const std::string& path) {
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf) - 1);
  if (n < 0) fail(kj::str("cannot read link ", path.c_str(), ": ", strerror(errno)));
  return std::string(buf, static_cast<size_t>(n));
}

// "Name:\tvalue" from /proc/PID/status-like text.
std::string statusField(const std::string& status, const char* name) {
  std::string key = std::string("\n") + name + ":";
  size_t at = status.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  size_t end = status.find('\n', at);
  std::string v = status.substr(at, end - at);
  v.erase(0, v.find_first_not_of(" \t"));
  return v;
}

void addSignals(uint64_t mask, capnp::List<uint32_t>::Builder out) {
  uint32_t i = 0;
  for (uint32_t sig = 1; sig <= 64; ++sig) {
    if (mask & (1ull << (sig - 1))) out.set(i++, sig);
  }
}

// The siginfo of each queued pending signal, when the queue can be read (see
// pending_siginfo.h); only looked at when /proc says something is pending.
template <typename InitList>
void addSiginfo(PendingSiginfoReader& reader, pid_t tid, bool shared, InitList init) {
  kj::Vector<QueuedSignal> queued;
  if (!reader.read(tid, shared, queued)) return;
  auto list = init(static_cast<uint32_t>(queued.size()));
  for (size_t i = 0; i < queued.size(); ++i) list.set(i, kj::arrayPtr(queued[i].info, sizeof(queued[i].info)));
}

uint64_t pendingMask(const std::string& status, const char* field) {
  uint64_t m = strtoull(statusField(status, field).c_str(), nullptr, 16);
  return m & ~(1ull << (63 - 1));  // never re-raise the checkpoint signal
}

void writeMemory(pid_t, PageSource& memory, ImageWriter& w, CaptureStats& stats) {
  kj::Array<MappedRegion> regions = memory.regions();
  capnp::MallocMessageBuilder mapMsg;
  auto list = mapMsg.initRoot<schema::MemoryMap>().initRegions(regions.size());
  for (size_t i = 0; i < regions.size(); ++i) {
    const MappedRegion& r = regions[i];
    auto out = list[i];
    out.setStart(r.start);
    out.setEnd(r.end);
    out.setProt(r.prot);
    out.setFlags(r.flags);
    out.setKind(r.kind);
    out.setPath(r.path);
    out.setFileOffset(r.offset);
    out.setInode(r.inode);
    if (r.kind == schema::MemoryRegion::Kind::FILE) {
      struct stat st {};
      if (stat(r.path.cStr(), &st) == 0) {
        out.setDevice(st.st_dev);
        out.setFileSize(static_cast<uint64_t>(st.st_size));
        out.setMtimeNs(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec);
      }
    }
  }
  w.section(SectionType::memoryMap, mapMsg);

  auto buf = kj::heapArray<kj::byte>(kCopyChunk);
  for (const MappedRegion& r : regions) {
    kj::Vector<PageSpan> spans;
    memory.pagesToSave(r, spans);
    if (spans.empty()) continue;
    capnp::MallocMessageBuilder pagesMsg;
    auto runs = pagesMsg.initRoot<schema::Pages>().initRuns(spans.size());
    uint64_t total = 0;
    for (size_t i = 0; i < spans.size(); ++i) {
      runs[i].setAddr(spans[i].addr);
      runs[i].setPages(static_cast<uint32_t>(spans[i].pages));
      total += spans[i].pages * kPage;
    }
    w.beginData(SectionType::pages, pagesMsg, total);
    for (const PageSpan& s : spans) {
      uint64_t left = s.pages * kPage;
      for (uint64_t addr = s.addr; left > 0;) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
        memory.read(addr, buf.begin(), n);
        w.data(buf.begin(), n);
        addr += n;
        left -= n;
      }
    }
    w.endData();
    stats.savedPages += total / kPage;
  }
}

void writeThreads(pid_t pid, const control::Block& block, ImageWriter& w, CaptureStats& stats) {
  uint32_t n = std::min(block.threadCount, control::kMaxThreads);
  capnp::MallocMessageBuilder msg;
  auto threads = msg.initRoot<schema::Threads>().initThreads(n);
  // The thread whose TID is the process's is the main thread: it goes first.
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < n; ++i) {
    if (block.threads[i].realTid == pid) order.insert(order.begin(), i);
    else order.push_back(i);
  }
  PendingSiginfoReader siginfo(pid, block.vpid);
  for (uint32_t k = 0; k < n; ++k) {
    const control::ThreadSlot& s = block.threads[order[k]];
    auto t = threads[k];
    t.setVtid(s.vtid);
    t.setRealTid(s.realTid);
    t.setSigframeAddr(s.ucontextAddr);
    t.setFsBase(s.kernel.fsBase);
    t.setGsBase(s.kernel.gsBase);
    t.setTidAddress(s.kernel.tidAddress);
    t.setRobustList(s.kernel.robustList);
    t.setRobustListLen(s.kernel.robustListLen);
    t.setRseqAddr(s.kernel.rseqAddr);
    t.setRseqLen(s.kernel.rseqLen);
    t.setRseqSig(s.kernel.rseqSig);
    t.setAltStackSp(s.kernel.altStackSp);
    t.setAltStackSize(s.kernel.altStackSize);
    t.setAltStackFlags(s.kernel.altStackFlags);
    char what[64];
    snprintf(what, sizeof(what), "task/%d/status", s.realTid);
    uint64_t pending = pendingMask(readProcFile(pid, what), "SigPnd");
    snprintf(what, sizeof(what), "task/%d/comm", s.realTid);
    std::string name = readProcFile(pid, what);
    while (!name.empty() && name.back() == '\n') name.pop_back();
    t.setName(name);
    stats.pendingSignals |= pending;
    addSignals(pending, t.initPendingSignals(static_cast<uint32_t>(__builtin_popcountll(pending))));
    if (pending != 0) addSiginfo(siginfo, s.realTid, false, [&](uint32_t n) { return t.initPendingSiginfo(n); });
  }
  w.section(SectionType::threads, msg);
  stats.threads = n;
}

void writeProcess(pid_t pid, const control::Block& block, ImageWriter& w, CaptureStats& stats) {
  capnp::MallocMessageBuilder msg;
  auto p = msg.initRoot<schema::Process>();
  // /proc/PID/stat: fields after the command's closing parenthesis, numbered from 3.
  std::string stat = readProcFile(pid, "stat");
  std::vector<uint64_t> f(60, 0);
  size_t at = stat.rfind(')');
  if (at == std::string::npos) fail(kj::str("cannot parse /proc/", pid, "/stat"));
  const char* c = stat.c_str() + at + 2;
  for (int field = 3; field < 60 && *c; ++field) {
    f[field] = strtoull(c, nullptr, 10);
    const char* sp = strchr(c, ' ');
    if (sp == nullptr) break;
    c = sp + 1;
  }
  auto mm = p.initMm();
  mm.setStartCode(f[26]);
  mm.setEndCode(f[27]);
  mm.setStartStack(f[28]);
  mm.setStartData(f[45]);
  mm.setEndData(f[46]);
  mm.setStartBrk(f[47]);
  mm.setArgStart(f[48]);
  mm.setArgEnd(f[49]);
  mm.setEnvStart(f[50]);
  mm.setEnvEnd(f[51]);
  mm.setBrk(block.brk);
  std::string auxv = readProcFile(pid, "auxv");
  mm.setAuxv(kj::arrayPtr(reinterpret_cast<const kj::byte*>(auxv.data()), auxv.size()));

  auto actions = p.initSigactions(64);
  for (uint32_t i = 0; i < 64; ++i) {
    actions[i].setHandler(block.sigactions[i].handler);
    actions[i].setFlags(block.sigactions[i].flags);
    actions[i].setRestorer(block.sigactions[i].restorer);
    actions[i].setMask(block.sigactions[i].mask);
  }
  p.initItimerReal().setValueNs(block.itimerValueNs);
  p.getItimerReal().setIntervalNs(block.itimerIntervalNs);
  std::string status = readProcFile(pid, "status");
  p.setUmask(static_cast<uint32_t>(strtoul(statusField(status, "Umask").c_str(), nullptr, 8)));
  char cwdLink[64];
  snprintf(cwdLink, sizeof(cwdLink), "/proc/%d/cwd", pid);
  p.setCwd(readLink(cwdLink).c_str());
  auto limits = p.initRlimits(RLIMIT_NLIMITS);
  for (int r = 0; r < RLIMIT_NLIMITS; ++r) {
    struct rlimit lim {};
    prlimit(pid, static_cast<__rlimit_resource>(r), nullptr, &lim);
    limits[r].setResource(static_cast<uint32_t>(r));
    limits[r].setSoft(lim.rlim_cur);
    limits[r].setHard(lim.rlim_max);
  }
  p.setResumeInfoAddr(block.resumeInfoAddr);
  p.setResumeEntry(block.resumeEntry);
  p.setMonotonicNs(block.monotonicNs);
  uint64_t shared = pendingMask(status, "ShdPnd");
  stats.pendingSignals |= shared;
  addSignals(shared, p.initProcessPending(static_cast<uint32_t>(__builtin_popcountll(shared))));
  if (shared != 0) {
    PendingSiginfoReader siginfo(pid, block.vpid);
    addSiginfo(siginfo, pid, true, [&](uint32_t n) { return p.initProcessPendingSiginfo(n); });
  }
  w.section(SectionType::process, msg);
}

struct FdInfo {
  int fd;
  std::string target;
  uint32_t flags;
  int64_t pos;
  struct stat st;
};

bool sameFile(pid_t pid, int a, int b) {
  return syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b) == 0;
}

std::string readAll(int fd, uint64_t limit, const std::string& what) {
  std::string s;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) {
    s.append(buf, static_cast<size_t>(n));
    if (s.size() > limit) fail(kj::str(what.c_str(), " is larger than ", limit >> 20, " MiB; cannot keep it in the image"));
  }
  return s;
}

void writeFiles(pid_t pid, const control::Block& block, ImageWriter& w, CaptureStats& stats) {
  char dirPath[64];
  snprintf(dirPath, sizeof(dirPath), "/proc/%d/fd", pid);
  DIR* d = opendir(dirPath);
  if (d == nullptr) fail(kj::str("cannot list ", dirPath, ": ", strerror(errno)));
  std::vector<int> numbers;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    int fd = atoi(e->d_name);
    bool shim = false;
    for (uint32_t i = 0; i < block.shimFdCount && i < control::kMaxShimFds; ++i) shim = shim || block.shimFds[i] == fd;
    if (!shim) numbers.push_back(fd);
  }
  closedir(d);
  std::sort(numbers.begin(), numbers.end());

  std::vector<FdInfo> fds;
  for (int fd : numbers) {
    FdInfo info{};
    info.fd = fd;
    std::string link = std::string(dirPath) + "/" + std::to_string(fd);
    info.target = readLink(link);
    std::string fdinfo = "\n" + readProcFile(pid, "fdinfo/" + std::to_string(fd));
    info.pos = strtoll(statusField(fdinfo, "pos").c_str(), nullptr, 10);
    info.flags = static_cast<uint32_t>(strtoul(statusField(fdinfo, "flags").c_str(), nullptr, 8));
    if (stat(link.c_str(), &info.st) != 0) memset(&info.st, 0, sizeof(info.st));
    fds.push_back(info);
  }

  capnp::MallocMessageBuilder msg;
  auto list = msg.initRoot<schema::Files>().initFds(static_cast<uint32_t>(fds.size()));
  using K = schema::FileDescriptor::Kind;
  for (size_t i = 0; i < fds.size(); ++i) {
    const FdInfo& f = fds[i];
    auto out = list[i];
    out.setFd(f.fd);
    out.setFlags(f.flags & ~static_cast<uint32_t>(O_CLOEXEC));
    out.setCloexec((f.flags & O_CLOEXEC) != 0);
    out.setOffset(f.pos);
    for (size_t j = 0; j < i; ++j) {
      if (sameFile(pid, fds[j].fd, f.fd)) {
        out.setDupOf(fds[j].fd);
        break;
      }
    }
    std::string path = f.target;
    bool deleted = path.size() > 10 && path.compare(path.size() - 10, 10, " (deleted)") == 0;
    if (deleted) path.resize(path.size() - 10);
    out.setPath(path.c_str());
    out.setInode(f.st.st_ino);
    out.setDevice(f.st.st_dev);
    out.setSize(static_cast<uint64_t>(f.st.st_size));
    out.setMtimeNs(static_cast<int64_t>(f.st.st_mtim.tv_sec) * 1000000000 + f.st.st_mtim.tv_nsec);
    std::string link = std::string(dirPath) + "/" + std::to_string(f.fd);
    K eventKind;
    if (eventKindOf(path, eventKind)) {
      out.setKind(eventKind);  // a dup carries the kind too: it stays local on migration
      if (out.getDupOf() < 0) captureEventObject(pid, numbers, out);
    } else if (path[0] == '/' && (S_ISREG(f.st.st_mode) || S_ISDIR(f.st.st_mode))) {
      if (deleted && out.getDupOf() < 0) {
        out.setKind(K::UNLINKED);
        int rfd = ::open(link.c_str(), O_RDONLY | O_CLOEXEC);
        if (rfd < 0) fail(kj::str("cannot read deleted file ", path.c_str(), " (fd ", f.fd, "): ", strerror(errno)));
        std::string contents = readAll(rfd, kMaxSavedFileBytes, "deleted file " + path);
        ::close(rfd);
        out.setContents(kj::arrayPtr(reinterpret_cast<const kj::byte*>(contents.data()), contents.size()));
      } else {
        out.setKind(deleted ? K::UNLINKED : K::FILE);
      }
    } else if (path.rfind("/dev/", 0) == 0 && S_ISCHR(f.st.st_mode) &&
               (path == "/dev/null" || path == "/dev/zero" || path == "/dev/full" ||
                path == "/dev/random" || path == "/dev/urandom")) {
      out.setKind(K::DEVICE);
    } else if (path.rfind("pipe:", 0) == 0) {
      bool bothEnds = false;
      for (const FdInfo& other : fds) {
        bothEnds = bothEnds || (other.target == f.target && (other.flags & O_ACCMODE) != (f.flags & O_ACCMODE));
      }
      out.setKind(bothEnds ? K::PIPE : K::INHERITED);
      out.setPipeId(f.st.st_ino);
      if (bothEnds && (f.flags & O_ACCMODE) == O_RDONLY && out.getDupOf() < 0) {
        // Take the buffered bytes out and put them straight back: the process
        // (parked, so nobody else reads) keeps them, and the image has a copy.
        int rfd = ::open(link.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        std::string data;
        if (rfd >= 0) {
          char buf[65536];
          ssize_t n;
          while ((n = ::read(rfd, buf, sizeof(buf))) > 0) data.append(buf, static_cast<size_t>(n));
          ::close(rfd);
        }
        if (!data.empty()) {
          for (const FdInfo& other : fds) {
            if (other.target != f.target || (other.flags & O_ACCMODE) != O_WRONLY) continue;
            int wfd = ::open((std::string(dirPath) + "/" + std::to_string(other.fd)).c_str(), O_WRONLY | O_CLOEXEC);
            bool ok = wfd >= 0 && ::write(wfd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
            if (wfd >= 0) ::close(wfd);
            if (!ok) fail(kj::str("could not put back ", data.size(), " bytes into the pipe of fd ", f.fd));
            break;
          }
          out.setContents(kj::arrayPtr(reinterpret_cast<const kj::byte*>(data.data()), data.size()));
        }
      }
    } else {
      out.setKind(K::INHERITED);  // terminal, socket, pipe to another process, ...
    }
  }
  w.section(SectionType::files, msg);
  stats.fds = static_cast<uint32_t>(fds.size());
}

}  // namespace

CaptureStats captureProcess(pid_t pid, const control::Block& block, PageSource& memory, ByteSink& out) {
  CaptureStats stats{};
  if (block.magic != control::kMagic || block.version != control::kVersion) {
    fail(kj::str("process ", pid, " runs an incompatible libmig (checkpoint block version ", block.version, ")"));
  }
  std::string cmdline = readProcFile(pid, "cmdline");
  capnp::MallocMessageBuilder header;
  fillHeader(header.initRoot<schema::Header>(), 0, block.vpid, cmdline.c_str());
  ImageWriter w(out, header);
  writeProcess(pid, block, w, stats);
  writeThreads(pid, block, w, stats);
  writeFiles(pid, block, w, stats);
  writeMemory(pid, memory, w, stats);
  w.finish();
  stats.imageBytes = w.bytesWritten();
  return stats;
}

}  // namespace mig::image
