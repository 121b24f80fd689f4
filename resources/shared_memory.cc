// See shared_memory.h. Why the restart process holds the objects and the members
// open them as /proc/<restart>/fd/N: the members are forked by one another and each
// closes every fd its image does not name before the restorer runs; a path through
// the restart process (which lives as long as the tree) needs no fd passed down.
#include "resources/shared_memory.h"

#include "resources/proc_file.h"

#include "image/image_error.h"

#include <kj/debug.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/mman.h>
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

size_t ipcSection(image::FileReader& img) {
  for (size_t i = 0; i < img.sectionCount(); ++i) {
    if (img.section(i).type == static_cast<uint16_t>(image::SectionType::ipc)) return i;
  }
  return 0;
}

TreeSharedMemory::TreeSharedMemory(image::FileReader& img) {
  size_t sec = ipcSection(img);
  if (sec == 0) return;
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
    std::string path = "/proc/" + std::to_string(getpid()) + "/fd/" + std::to_string(fd.get());
    for (auto v : o.getViews()) regions_[v.getVpid()].add(image::RegionFile{v.getStart(), kj::heapString(path.c_str())});
    fds_.add(kj::mv(fd));
  }
}

kj::ArrayPtr<const image::RegionFile> TreeSharedMemory::regionsOf(int32_t vpid) const {
  auto it = regions_.find(vpid);
  if (it == regions_.end()) return nullptr;
  return it->second.asPtr();
}

}  // namespace mig::resources
