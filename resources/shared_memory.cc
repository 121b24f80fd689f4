// See shared_memory.h. Why the restart process holds the objects and the members
// open them as /proc/<restart>/fd/N: the members are forked by one another and each
// closes every fd its image does not name before the restorer runs; a path through
// the restart process (which lives as long as the tree) needs no fd passed down.
#include "resources/shared_memory.h"

#include "resources/memory.h"
#include "resources/proc_file.h"

#include "image/image_error.h"

#include <kj/debug.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <climits>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::resources {

using image::fail;

namespace {

constexpr uint64_t kPage = 4096;
constexpr size_t kChunk = 1u << 20;

bool endsWith(const std::string& s, const char* suffix) {
  size_t n = strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// Shared memory that only its mappings (and fds) lead to: what the memory map calls
// a memfd or shared anonymous memory. A SysV segment is sysv_ipc.cc's: it keeps its id.
bool unnamedShared(const std::string& path) {
  if (path.rfind("/SYSV", 0) == 0) return false;
  return path == "/dev/zero (deleted)" || path.rfind("/memfd:", 0) == 0 || endsWith(path, " (deleted)");
}

// A memfd's name for the object: its old name without the directory and " (deleted)".
std::string memfdName(const std::string& path) {
  std::string n = path;
  if (endsWith(n, " (deleted)")) n.resize(n.size() - 10);
  if (n.rfind("/memfd:", 0) == 0) n.erase(0, 7);
  size_t slash = n.rfind('/');
  if (slash != std::string::npos) n.erase(0, slash + 1);
  if (n.empty() || n == "zero") n = "mig-shared";
  if (n.size() > 200) n.resize(200);
  return n;
}

}  // namespace

kj::Vector<SharedObject> findTreeSharedMemory(kj::ArrayPtr<const TreeCaptureMember> members) {
  std::map<std::pair<std::string, uint64_t>, SharedObject> byId;  // (device, inode)
  for (auto& m : members) {
    if (m.block == nullptr) continue;
    forEachProcLine(m.proc.pid, "maps", [&](const std::string& line) {
      unsigned long long start, end, offset, inode;
      char perms[8], dev[32];
      int at = 0;
      if (sscanf(line.c_str(), "%llx-%llx %7s %llx %31s %llu %n", &start, &end, perms, &offset, dev, &inode, &at) < 6) return;
      if (perms[3] != 's' || inode == 0) return;
      std::string name = line.substr(static_cast<size_t>(at));
      while (!name.empty() && name.back() == ' ') name.pop_back();
      if (!unnamedShared(name)) return;
      SharedObject& o = byId[{dev, inode}];
      if (o.name == nullptr) o.name = kj::heapString(name.c_str());
      o.views.add(SharedView{m.proc.pid, m.block->vpid, start, end, offset});
      o.size = std::max<uint64_t>(o.size, offset + (end - start));
    });
  }
  kj::Vector<SharedObject> out;
  for (auto& [id, o] : byId) {
    bool two = false;
    for (auto& v : o.views) two = two || v.pid != o.views[0].pid;
    if (two) out.add(kj::mv(o));
  }
  return out;
}

void setSharedMemory(kj::ArrayPtr<const SharedObject> objects,
                     capnp::List<image::schema::SharedMemoryObject>::Builder list, uint64_t& dataAt) {
  for (size_t i = 0; i < objects.size(); ++i) {
    const SharedObject& o = objects[i];
    auto out = list[static_cast<unsigned>(i)];
    out.setName(o.name);
    out.setSize(o.size);
    out.setDataOffset(dataAt);
    auto views = out.initViews(static_cast<unsigned>(o.views.size()));
    for (size_t j = 0; j < o.views.size(); ++j) {
      auto v = views[static_cast<unsigned>(j)];
      v.setVpid(o.views[j].vpid);
      v.setStart(o.views[j].start);
      v.setEnd(o.views[j].end);
      v.setOffset(o.views[j].offset);
    }
    dataAt += o.size;
  }
}

void writeSharedMemoryData(kj::ArrayPtr<const SharedObject> objects, image::ImageWriter& w) {
  auto buf = kj::heapArray<kj::byte>(kChunk);
  for (const SharedObject& o : objects) {
    std::map<pid_t, kj::Own<ProcPageSource>> sources;
    for (uint64_t at = 0; at < o.size; at += kChunk) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, o.size - at));
      memset(buf.begin(), 0, n);
      // Page by page through the first view that shows it (every view of a page
      // shows the same bytes).
      for (uint64_t p = at; p < at + n; p += kPage) {
        for (const SharedView& v : o.views) {
          if (p < v.offset || p >= v.offset + (v.end - v.start)) continue;
          auto& src = sources[v.pid];
          if (src.get() == nullptr) src = kj::heap<ProcPageSource>(v.pid);
          src->read(v.start + (p - v.offset), buf.begin() + (p - at), static_cast<size_t>(std::min<uint64_t>(kPage, at + n - p)));
          break;
        }
      }
      w.data(buf.begin(), n);
    }
  }
}

WithoutSharedViews::WithoutSharedViews(PageSource& inner, kj::ArrayPtr<const SharedObject> objects, pid_t pid,
                                       kj::ArrayPtr<const int32_t> segments)
    : inner_(inner), segments_(segments) {
  for (auto& o : objects) {
    for (auto& v : o.views) {
      if (v.pid == pid) starts_.add(v.start);
    }
  }
}

void WithoutSharedViews::pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) {
  for (uint64_t s : starts_) {
    if (s == r.start) return;
  }
  if (r.flags == MAP_SHARED && r.path.startsWith("/SYSV")) {
    for (int32_t id : segments_) {
      if (static_cast<uint64_t>(static_cast<uint32_t>(id)) == r.inode) return;
    }
  }
  inner_.pagesToSave(r, out);
}

size_t ipcSection(image::FileReader& img) { return img.firstSection(image::SectionType::ipc).orDefault(0); }

namespace {

// The image's shared objects made again, each a memfd of its size with its contents
// (zero pages left holes), in the image's order.
kj::Vector<kj::AutoCloseFd> makeSharedObjects(image::FileReader& img, size_t sec) {
  kj::Vector<kj::AutoCloseFd> out;
  auto buf = kj::heapArray<kj::byte>(kChunk);
  for (auto o : img.meta<image::schema::Ipc>(sec).getSharedMemory()) {
    std::string name = memfdName(o.getName().cStr());
    kj::AutoCloseFd fd(memfd_create(name.c_str(), MFD_CLOEXEC));
    if (fd == nullptr) fail(kj::str("cannot make the shared object ", o.getName(), " again: memfd_create: ", strerror(errno)));
    if (ftruncate(fd, static_cast<off_t>(o.getSize())) != 0) {
      fail(kj::str("cannot make the shared object ", o.getName(), " again (", o.getSize(), " bytes): ", strerror(errno)));
    }
    for (uint64_t at = 0; at < o.getSize(); at += kChunk) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, o.getSize() - at));
      img.readData(sec, o.getDataOffset() + at, buf.begin(), n);
      bool zero = std::all_of(buf.begin(), buf.begin() + n, [](kj::byte b) { return b == 0; });
      if (zero) continue;  // leave it a hole
      if (pwrite(fd, buf.begin(), n, static_cast<off_t>(at)) != static_cast<ssize_t>(n)) {
        fail(kj::str("cannot fill the shared object ", o.getName(), ": ", strerror(errno)));
      }
    }
    out.add(kj::mv(fd));
  }
  return out;
}

}  // namespace

TreeSharedMemory::TreeSharedMemory(image::FileReader& img) {
  size_t sec = ipcSection(img);
  if (sec == 0) return;
  fds_ = makeSharedObjects(img, sec);
  size_t i = 0;
  for (auto o : img.meta<image::schema::Ipc>(sec).getSharedMemory()) {
    std::string path = "/proc/" + std::to_string(getpid()) + "/fd/" + std::to_string(fds_[i++].get());
    for (auto v : o.getViews()) regions_[v.getVpid()].add(image::RegionFile{v.getStart(), kj::heapString(path.c_str())});
  }
}

kj::ArrayPtr<const image::RegionFile> TreeSharedMemory::regionsOf(int32_t vpid) const {
  auto it = regions_.find(vpid);
  if (it == regions_.end()) return nullptr;
  return it->second.asPtr();
}

// --- a tree that migrates (shared_memory.h, MovingShare) ------------------------------

namespace {

// Where the members' restarts find object `i` of a moving tree: a symlink to the
// holder's fd (/dev/shm: a directory every user may write, and memory, not disk).
kj::String holderLink(kj::StringPtr holder, size_t i) { return kj::str("/dev/shm/", holder, ".", i); }

// Forked twice from the root's restart, so that it is no process's child in the job and
// sits in a session of its own (the job's signals and waits never meet it): keeps the
// objects `fds` open until the root (this process, which becomes the root job) ends,
// then removes their links and ends. Its fds are those objects only. Returns its PID.
pid_t startHolder(kj::ArrayPtr<const kj::AutoCloseFd> fds, kj::StringPtr holder) {
  int rootFd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  if (rootFd < 0) fail(kj::str("cannot watch the restart for the tree's shared memory: pidfd_open: ", strerror(errno)));
  KJ_DEFER(close(rootFd));
  int told[2];
  if (pipe2(told, O_CLOEXEC) != 0) fail(kj::str("cannot start the tree's shared memory holder: ", strerror(errno)));
  auto links = kj::heapArray<kj::String>(fds.size());
  for (size_t i = 0; i < fds.size(); ++i) links[i] = holderLink(holder, i);
  pid_t middle = fork();
  if (middle < 0) fail(kj::str("cannot start the tree's shared memory holder: fork: ", strerror(errno)));
  if (middle == 0) {
    setsid();
    pid_t h = fork();
    if (h == 0) {
      prctl(PR_SET_NAME, "mig-shared", 0, 0, 0);
      std::vector<int> keep = {rootFd};
      for (auto& fd : fds) keep.push_back(fd.get());
      std::sort(keep.begin(), keep.end());
      int null = open("/dev/null", O_RDWR);
      if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
      }
      unsigned from = 3;
      for (int k : keep) {
        if (static_cast<unsigned>(k) > from) syscall(SYS_close_range, from, static_cast<unsigned>(k) - 1, 0);
        from = static_cast<unsigned>(k) + 1;
      }
      syscall(SYS_close_range, from, ~0u, 0);
      struct pollfd p = {rootFd, POLLIN, 0};
      while (poll(&p, 1, -1) < 0 && errno == EINTR) {
      }
      for (auto& l : links) unlink(l.cStr());
      _exit(0);
    }
    (void)!write(told[1], &h, sizeof(h));
    _exit(h > 0 ? 0 : 1);
  }
  close(told[1]);
  pid_t h = -1;
  ssize_t n;
  do n = read(told[0], &h, sizeof(h)); while (n < 0 && errno == EINTR);
  close(told[0]);
  while (waitpid(middle, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (n != sizeof(h) || h <= 0) fail(kj::str("cannot start the tree's shared memory holder"));
  return h;
}

// The regions the image's own process maps from objects published under `paths`.
kj::Array<image::RegionFile> viewsOf(image::FileReader& img, size_t sec, kj::ArrayPtr<const kj::String> paths) {
  const int32_t vpid = img.header().getVpid();
  kj::Vector<image::RegionFile> out;
  size_t i = 0;
  for (auto o : img.meta<image::schema::Ipc>(sec).getSharedMemory()) {
    for (auto v : o.getViews()) {
      if (v.getVpid() == vpid) out.add(image::RegionFile{v.getStart(), kj::heapString(paths[i])});
    }
    ++i;
  }
  return out.releaseAsArray();
}

}  // namespace

CaptureStats captureMovingMember(pid_t pid, const control::Block& block, image::ByteSink& out,
                                 const CaptureOptions& options, const MovingShare& share, bool root) {
  CaptureStats stats{};
  capnp::MallocMessageBuilder header;
  fillJobHeader(header.initRoot<image::schema::Header>(), pid, block.vpid);
  image::ImageWriter w(out, header);
  const SysvIpc& sysv = *share.sysv;
  kj::Vector<int32_t> segments;
  for (auto& s : sysv.shm) segments.add(s.perm.id);
  if (share.shared.size() > 0 || !sysv.empty()) {
    capnp::MallocMessageBuilder ipcMsg;
    auto ipc = ipcMsg.initRoot<image::schema::Ipc>();
    uint64_t dataBytes = 0;
    auto objects = ipc.initSharedMemory(static_cast<unsigned>(share.shared.size()));
    setSharedMemory(share.shared, objects, dataBytes);
    if (root) {
      setSysvIpc(sysv, ipc, dataBytes);
    } else {
      // Only what this member's plan needs: where its views are, which segments its
      // attachments are (their sizes); the contents are the root's.
      dataBytes = 0;
      for (auto o : objects) o.setDataOffset(kContentsElsewhere);
      auto shm = ipc.initSysvShm(static_cast<unsigned>(sysv.shm.size()));
      for (size_t i = 0; i < sysv.shm.size(); ++i) {
        auto s = shm[static_cast<unsigned>(i)];
        setPerm(s.initPerm(), sysv.shm[i].perm);
        s.setSize(sysv.shm[i].size);
        s.setRemoved(sysv.shm[i].removed);
        s.setDataOffset(kContentsElsewhere);
      }
    }
    w.beginData(image::SectionType::ipc, ipcMsg, dataBytes + share.holder.size());
    if (root) {
      writeSharedMemoryData(share.shared, w);
      writeSysvData(sysv, w);
    }
    w.data(share.holder.begin(), share.holder.size());
    w.endData();
  }
  ProcPageSource memory(pid, options.forMigration);
  WithoutSharedViews own(memory, share.shared, pid, segments);
  captureProcessState(pid, block, w, stats, options);
  writeMemory(own, w, stats, nullptr);
  w.finish();
  stats.imageBytes = w.bytesWritten();
  return stats;
}

bool ipcAttachOnly(image::FileReader& img) {
  size_t sec = ipcSection(img);
  if (sec == 0) return false;
  auto ipc = img.meta<image::schema::Ipc>(sec);
  for (auto o : ipc.getSharedMemory()) {
    if (o.getDataOffset() == kContentsElsewhere) return true;
  }
  for (auto s : ipc.getSysvShm()) {
    if (s.getDataOffset() == kContentsElsewhere) return true;
  }
  return false;
}

namespace {

// The holder's name: the ipc section's data after the contents its lists place.
kj::String holderOf(image::FileReader& img, size_t sec) {
  auto ipc = img.meta<image::schema::Ipc>(sec);
  uint64_t end = 0;
  for (auto o : ipc.getSharedMemory()) {
    if (o.getDataOffset() != kContentsElsewhere) end = std::max(end, o.getDataOffset() + o.getSize());
  }
  for (auto s : ipc.getSysvShm()) {
    if (s.getDataOffset() != kContentsElsewhere) end = std::max(end, s.getDataOffset() + s.getSize());
  }
  const uint64_t total = img.section(sec).dataLen;
  if (end >= total || total - end > 128) return kj::str("");
  auto name = kj::heapString(static_cast<size_t>(total - end));
  img.readData(sec, end, name.begin(), name.size());
  return name;
}

}  // namespace

kj::Array<image::RegionFile> movedSharedRegions(image::FileReader& img) {
  size_t sec = ipcSection(img);
  if (sec == 0) return nullptr;
  auto ipc = img.meta<image::schema::Ipc>(sec);
  if (ipc.getSharedMemory().size() == 0) return nullptr;
  kj::String holder = holderOf(img, sec);
  if (holder.size() == 0 || holder.findFirst('/') != nullptr) {
    fail(kj::str("the image's shared memory names no holder (", holder, "); it was not made by a tree's migration"));
  }
  const size_t n = ipc.getSharedMemory().size();
  auto paths = kj::heapArray<kj::String>(n);
  if (!ipcAttachOnly(img)) {
    // The root: the objects made here, handed to their holder, published.
    auto fds = makeSharedObjects(img, sec);
    pid_t h = startHolder(fds, holder);
    for (size_t i = 0; i < n; ++i) {
      paths[i] = kj::str("/proc/", h, "/fd/", fds[i].get());
      auto link = holderLink(holder, i);
      if (symlink(paths[i].cStr(), link.cStr()) != 0) {
        fail(kj::str("cannot publish the tree's shared object ", ipc.getSharedMemory()[static_cast<unsigned>(i)].getName(),
                     " as ", link, ": ", strerror(errno)));
      }
    }
  } else {
    // Another member: the root's restart, ready before this one was started, made them.
    for (size_t i = 0; i < n; ++i) {
      auto link = holderLink(holder, i);
      char target[PATH_MAX];
      ssize_t len = readlink(link.cStr(), target, sizeof(target) - 1);
      int fd = len > 0 ? open(link.cStr(), O_RDONLY | O_CLOEXEC) : -1;
      if (fd < 0) {
        fail(kj::str("the tree's shared object ", ipc.getSharedMemory()[static_cast<unsigned>(i)].getName(),
                     " is not on this host (", link, ": ", strerror(errno),
                     "); the tree's root must be restored here first"));
      }
      close(fd);
      paths[i] = kj::heapString(target, static_cast<size_t>(len));
    }
  }
  return viewsOf(img, sec, paths);
}

}  // namespace mig::resources
