// See page_source.h.
#include "image/format.h"
#include "image/image_error.h"
#include "resources/dirty_pages.h"
#include "resources/page_source.h"
#include "rsc/open_rule.h"

#include <kj/function.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <string>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

namespace mig::resources {

using image::fail;
namespace schema = image::schema;

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPresent = 1ull << 63;
constexpr uint64_t kSwapped = 1ull << 62;
constexpr uint64_t kFilePage = 1ull << 61;  // page cache or shared memory, not a private copy

bool endsWith(const std::string& s, const char* suffix) {
  size_t n = strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

int openProc(pid_t pid, const char* what) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/%s", pid, what);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(kj::str("cannot open ", path, ": ", strerror(errno)));
  return fd;
}

// The first bytes of the file behind a mapping (zeros if it cannot be read).
// map_files reaches the file even if it was renamed or deleted.
void mappedFileMagic(pid_t pid, const MappedRegion& r, char (&magic)[8]) {
  memset(magic, 0, sizeof(magic));
  char path[96];
  snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, pid, r.start, r.end);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) fd = ::open(r.path.cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (pread(fd, magic, sizeof(magic), 0) != sizeof(magic)) memset(magic, 0, sizeof(magic));
  ::close(fd);
}

// Private file mappings saved whole, as anonymous memory: a mig image that a restored
// process maps (the image may be gone when the new one is restarted), and, for a
// migration, mappings of files other than programs and libraries (ELF files under the
// system's directories, which every host of a cluster has: rsc/open_rule.h): data
// files, and a library in the user's directories, may exist only at home.
bool saveWholeMapping(pid_t pid, const MappedRegion& r, bool forMigration) {
  char magic[8];
  mappedFileMagic(pid, r, magic);
  if (memcmp(magic, image::kMagic, sizeof(image::kMagic)) == 0) return true;
  if (!forMigration) return false;
  return memcmp(magic, "\x7f" "ELF", 4) != 0 ||
         rsc::openSide(r.path.cStr(), O_RDONLY) != rsc::OpenSide::HereIfSameFile;
}

}  // namespace

bool parseMapsLine(kj::StringPtr line, MappedRegion& out) {
  unsigned long long start, end, offset, inode;
  char perms[8];
  unsigned devMajor, devMinor;
  int pathAt = 0;
  if (sscanf(line.cStr(), "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms, &offset, &devMajor,
             &devMinor, &inode, &pathAt) < 7) {
    fail(kj::str("unexpected line in a memory map: ", line));
  }
  std::string path = pathAt > 0 ? std::string(line.cStr() + pathAt) : std::string();
  while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.pop_back();
  if (path == "[vsyscall]" || path == "[uprobes]") return false;
  if (endsWith(path, "/mig-restore")) return false;  // the restorer's leftover code
  using K = schema::MemoryRegion::Kind;
  out.start = start;
  out.end = end;
  out.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
             (perms[2] == 'x' ? PROT_EXEC : 0);
  out.flags = perms[3] == 's' ? MAP_SHARED : MAP_PRIVATE;
  out.offset = offset;
  out.inode = inode;
  out.kind = K::ANONYMOUS;
  if (path == "[heap]") out.kind = K::HEAP;
  else if (path == "[stack]") out.kind = K::STACK;
  else if (path == "[vdso]") out.kind = K::VDSO;
  else if (path == "[vvar]") out.kind = K::VVAR;
  else if (path == "[vvar_vclock]") out.kind = K::VVAR_VCLOCK;
  else if (path == "/dev/zero (deleted)" || path == "/dev/zero" || path.empty() || path[0] == '[') {
    out.kind = K::ANONYMOUS;  // private or shared anonymous memory (or a named anon region)
    path.clear();
  } else if (path.rfind("/memfd:", 0) == 0 || endsWith(path, " (deleted)") || path.rfind("/SYSV", 0) == 0) {
    out.kind = K::MEMFD;  // contents saved: the file cannot be reopened by name
  } else {
    out.kind = K::FILE;
  }
  out.path = kj::heapString(path.c_str());
  return true;
}

ProcPageSource::ProcPageSource(pid_t pid, bool forMigration) : pid_(pid), forMigration_(forMigration) {
  pagemap_ = openProc(pid, "pagemap");
  mem_ = openProc(pid, "mem");
}

ProcPageSource::~ProcPageSource() noexcept(false) {
  if (pagemap_ >= 0) ::close(pagemap_);
  if (mem_ >= 0) ::close(mem_);
}

kj::Array<MappedRegion> ProcPageSource::regions() {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/maps", pid_);
  FILE* f = fopen(path, "re");
  if (f == nullptr) fail(kj::str("cannot read ", path, ": ", strerror(errno)));
  KJ_DEFER(fclose(f));
  kj::Vector<MappedRegion> out;
  char* line = nullptr;
  size_t cap = 0;
  KJ_DEFER(free(line));
  while (getline(&line, &cap, f) > 0) {
    MappedRegion r{};
    if (!parseMapsLine(line, r)) continue;
    bool privateFile = r.kind == schema::MemoryRegion::Kind::FILE && r.flags == MAP_PRIVATE;
    // A read-only shared mapping of a file the new host would not open itself travels
    // as a private copy (a snapshot, as a migrated process maps a home file:
    // shim/forward/home_mmap.h); writable ones are refused before the freeze
    // only without an fd of the file (sharedWritableFileMapping).
    bool sharedReadOnlyHomeFile = forMigration_ && r.kind == schema::MemoryRegion::Kind::FILE &&
                                  r.flags == MAP_SHARED && (r.prot & PROT_WRITE) == 0 &&
                                  rsc::openSide(r.path.cStr(), O_RDONLY) != rsc::OpenSide::HereIfSameFile;
    // A writable one too, whatever the file: the shim keeps that copy coherent with the
    // file at home at its lock points, and reads it all again from home after the
    // restore (shim/forward/shared_file_mapping.h).
    if (forMigration_ && r.kind == schema::MemoryRegion::Kind::FILE && r.flags == MAP_SHARED &&
        (r.prot & PROT_WRITE) != 0) {
      sharedReadOnlyHomeFile = true;
    }
    if (sharedReadOnlyHomeFile) r.flags = MAP_PRIVATE;
    if (sharedReadOnlyHomeFile || (privateFile && saveWholeMapping(pid_, r, forMigration_))) {
      r.kind = schema::MemoryRegion::Kind::ANONYMOUS;
      r.path = kj::heapString("");
      r.inode = 0;
      r.saveWhole = true;
    }
    out.add(kj::mv(r));
  }
  return out.releaseAsArray();
}

void ProcPageSource::pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) {
  using K = schema::MemoryRegion::Kind;
  if (r.kind == K::VDSO || r.kind == K::VVAR || r.kind == K::VVAR_VCLOCK) return;
  bool sharedFile = r.kind == K::FILE && r.flags == MAP_SHARED;
  if (sharedFile) return;  // the file itself holds the contents
  bool privateFile = r.kind == K::FILE;
  bool sharedMemory = r.flags == MAP_SHARED;  // shared anonymous memory or memfd
  // Private memory holds data only in pages the page tables name: the kernel walks them
  // for us and skips what was never touched (a reservation of terabytes - ASan's shadow,
  // a Go or Java heap - costs a few table levels, not an entry per page). The page map
  // loop below is the fallback where the kernel has no PAGEMAP_SCAN.
  if (!sharedMemory && !r.saveWhole && scanPresent(pagemap_, r.start, r.end, out, privateFile)) return;
  uint64_t pages = (r.end - r.start) / kPage;
  constexpr uint64_t kChunk = 8192;
  uint64_t entries[kChunk];
  kj::byte page[kPage];
  static const kj::byte zero[kPage] = {};
  for (uint64_t first = 0; first < pages; first += kChunk) {
    uint64_t n = std::min(kChunk, pages - first);
    off_t at = static_cast<off_t>((r.start / kPage + first) * sizeof(uint64_t));
    // Shared memory and regions saved whole are read page by page whatever the map says.
    bool byMap = !sharedMemory && !r.saveWhole;
    if (byMap && pread(pagemap_, entries, n * sizeof(uint64_t), at) != static_cast<ssize_t>(n * sizeof(uint64_t))) {
      fail(kj::str("cannot read the page map of process ", pid_, ": ", strerror(errno)));
    }
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t e = entries[i];
      uint64_t addr = r.start + (first + i) * kPage;
      bool save;
      if (sharedMemory || r.saveWhole) {
        // Shared memory pages need not be mapped here to hold data, nor need pages
        // still in the image a restored process maps: read them all, keep the ones
        // that are not zero.
        read(addr, page, kPage);
        save = memcmp(page, zero, kPage) != 0;
      } else if (privateFile) {
        save = (e & kSwapped) || ((e & kPresent) && !(e & kFilePage));
      } else {
        save = (e & (kPresent | kSwapped)) != 0;
      }
      if (!save) continue;
      if (!out.empty() && out.back().addr + out.back().pages * kPage == addr) {
        ++out.back().pages;
      } else {
        out.add(PageSpan{addr, 1});
      }
    }
  }
}

void PageSource::readSpans(kj::ArrayPtr<const PageSpan> spans, kj::ArrayPtr<kj::byte* const> to) {
  for (size_t i = 0; i < spans.size(); ++i) read(spans[i].addr, to[i], spans[i].pages * kPage);
}

void PageSource::readSpans(kj::ArrayPtr<const PageSpan> spans, kj::byte* buf) {
  auto to = kj::heapArray<kj::byte*>(spans.size());
  for (size_t i = 0; i < spans.size(); ++i) {
    to[i] = buf;
    buf += spans[i].pages * kPage;
  }
  readSpans(spans, kj::ArrayPtr<kj::byte* const>(to.begin(), to.size()));
}

void ProcPageSource::readSpans(kj::ArrayPtr<const PageSpan> spans, kj::ArrayPtr<kj::byte* const> to) {
  // Scattered pages (what a job wrote since the last image) are many short runs: up to
  // IOV_MAX of them per process_vm_readv. A batch that comes back short (a PROT_NONE
  // page) is read again run by run, through read()'s /proc/PID/mem fallback.
  constexpr size_t kBatch = 1024;
  struct iovec local[kBatch], remote[kBatch];
  for (size_t first = 0; first < spans.size(); first += kBatch) {
    size_t n = std::min(kBatch, spans.size() - first);
    size_t want = 0;
    for (size_t i = 0; i < n; ++i) {
      size_t len = spans[first + i].pages * kPage;
      local[i] = {to[first + i], len};
      remote[i] = {reinterpret_cast<void*>(spans[first + i].addr), len};
      want += len;
    }
    ssize_t got = process_vm_readv(pid_, local, n, remote, n, 0);
    if (got != static_cast<ssize_t>(want)) {
      for (size_t i = 0; i < n; ++i) read(spans[first + i].addr, to[first + i], spans[first + i].pages * kPage);
    }
  }
}

void ProcPageSource::read(uint64_t addr, void* buf, size_t len) {
  auto* p = static_cast<kj::byte*>(buf);
  // process_vm_readv is the fast path (about a quarter less CPU than /proc/PID/mem);
  // it cannot read pages the process may not read itself (PROT_NONE), which the
  // /proc/PID/mem loop below can.
  struct iovec local = {p, len}, remote = {reinterpret_cast<void*>(addr), len};
  ssize_t got = process_vm_readv(pid_, &local, 1, &remote, 1, 0);
  if (got > 0) {
    p += got;
    addr += static_cast<uint64_t>(got);
    len -= static_cast<size_t>(got);
  }
  while (len > 0) {
    ssize_t n = pread(mem_, p, len, static_cast<off_t>(addr));
    if (n <= 0) {
      fail(kj::str("cannot read memory of process ", pid_, " at ", kj::hex(addr), ": ",
                   n == 0 ? "end of file" : strerror(errno)));
    }
    p += n;
    addr += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
}

namespace {

// Is fd `name` of process `pid` open for reading and writing, and does it hold a lock
// (/proc/PID/fdinfo: its flags, and a "lock:" line for each lock taken through it)?
bool openForWritingAndLocked(pid_t pid, const char* name) {
  char path[96];
  snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", pid, name);
  FILE* f = fopen(path, "re");
  if (f == nullptr) return false;
  KJ_DEFER(fclose(f));
  char line[256];
  bool rdwr = false, locked = false;
  while (fgets(line, sizeof(line), f) != nullptr) {
    unsigned long flags = 0;
    if (sscanf(line, "flags: %lo", &flags) == 1) rdwr = (flags & O_ACCMODE) == O_RDWR;
    if (strncmp(line, "lock:", 5) == 0) locked = true;
  }
  return rdwr && locked;
}

// Has process `pid` an fd open for reading and writing on the file (device, inode),
// through which it holds a lock? Through it the shim writes the mapping's changes
// home, at the lock calls that order the sharing (shim/forward/shared_file_mapping.h).
bool hasFdOf(pid_t pid, dev_t dev, uint64_t inode) {
  char dirPath[64];
  snprintf(dirPath, sizeof(dirPath), "/proc/%d/fd", pid);
  DIR* dir = opendir(dirPath);
  if (dir == nullptr) return false;
  KJ_DEFER(closedir(dir));
  while (const struct dirent* d = readdir(dir)) {
    if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
    std::string fdPath = std::string(dirPath) + "/" + d->d_name;
    struct stat st {};
    if (stat(fdPath.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == dev && st.st_ino == inode &&
        openForWritingAndLocked(pid, d->d_name)) {
      return true;
    }
  }
  return false;
}

}  // namespace

namespace {

// The path (or what it is) of the first region of process `pid` that `wanted` picks
// from its /proc/PID/maps line, or nullptr (also for a process gone: the freeze says so).
kj::Maybe<kj::String> firstMapping(pid_t pid, kj::FunctionParam<bool(const MappedRegion&, const char* line)> wanted) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/maps", pid);
  FILE* f = fopen(path, "re");
  if (f == nullptr) return nullptr;
  KJ_DEFER(fclose(f));
  char* line = nullptr;
  size_t cap = 0;
  KJ_DEFER(free(line));
  while (getline(&line, &cap, f) > 0) {
    MappedRegion r{};
    if (parseMapsLine(line, r) && wanted(r, line)) {
      return r.path.size() > 0 ? kj::mv(r.path) : kj::str("shared anonymous memory");
    }
  }
  return nullptr;
}

}  // namespace

kj::Maybe<kj::String> sharedWritableFileMapping(pid_t pid) {
  return firstMapping(pid, [&](const MappedRegion& r, const char* line) {
    if (r.kind != schema::MemoryRegion::Kind::FILE || r.flags != MAP_SHARED || (r.prot & PROT_WRITE) == 0) return false;
    // The shim reaches the file at home through an fd of it (shim/forward/
    // shared_file_mapping.h): one the job holds open, which the deputy keeps.
    unsigned devMajor = 0, devMinor = 0;
    return !(sscanf(line, "%*s %*s %*s %x:%x", &devMajor, &devMinor) == 2 &&
             hasFdOf(pid, makedev(devMajor, devMinor), r.inode));
  });
}

kj::Maybe<kj::String> sharedMemoryMapping(pid_t pid) {
  return firstMapping(pid, [](const MappedRegion& r, const char*) {
    return r.flags == MAP_SHARED &&
           (r.kind == schema::MemoryRegion::Kind::ANONYMOUS || r.kind == schema::MemoryRegion::Kind::MEMFD);
  });
}

}  // namespace mig::resources
