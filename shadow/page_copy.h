// The copy a post-copy hop's sender keeps of the pages its destination has not fetched
// yet (send_command.cc, PageSourceImpl), kept in a file in its host's spool
// (<spool>/job-ID.pages, tmpfs normally: memory as before) rather than in the sender's
// own memory, so that the pages outlive the sender: if it dies before the destination
// has them all, that host's shadowd serves them from the file (spooled_pages.cc).
// The file: a header (magic, run count, a `complete` word set once every run is
// copied, the runs: address, length, offset of its bytes in the file) rounded up to a
// page, then the runs' bytes.
#pragma once

#include <kj/array.h>
#include <kj/memory.h>
#include <kj/string.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mig::shadow {

struct PageRun {
  uint64_t addr, len;
  uint64_t offset;  // of its bytes in the copy
};

class PageCopy {
 public:
  // A copy for `runs` (their offsets are set here) in file `path`, made anew (owner
  // only), or in anonymous memory when `path` is empty. Null and `why` on failure.
  static kj::Own<PageCopy> create(kj::StringPtr path, kj::Array<PageRun> runs, kj::String& why) {
    const uint64_t header = headerBytes(runs.size());
    uint64_t off = header;
    for (auto& r : runs) {
      r.offset = off;
      off += r.len;
    }
    int fd = -1;
    if (path.size() > 0) {
      fd = ::open(path.cStr(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0 || ftruncate(fd, static_cast<off_t>(off)) != 0) {
        why = kj::str("cannot make ", path, ": ", strerror(errno));
        if (fd >= 0) ::close(fd);
        return {};
      }
    }
    void* at = fd >= 0 ? mmap(nullptr, off, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                       : mmap(nullptr, off, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (fd >= 0) ::close(fd);
    if (at == MAP_FAILED) {
      why = kj::str("cannot map a copy of ", off, " bytes: ", strerror(errno));
      return {};
    }
    auto* h = static_cast<Header*>(at);
    memcpy(h->magic, kMagic, sizeof h->magic);
    h->count = runs.size();
    h->complete = 0;
    memcpy(h + 1, runs.begin(), runs.size() * sizeof(PageRun));
    return kj::heap<PageCopy>(at, off, kj::mv(runs));
  }

  // A complete copy left in file `path`. Null and `why` if there is none.
  static kj::Own<PageCopy> open(kj::StringPtr path, kj::String& why) {
    int fd = ::open(path.cStr(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || fstat(fd, &st) != 0) {
      why = kj::str("cannot open ", path, ": ", strerror(errno));
      if (fd >= 0) ::close(fd);
      return {};
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    void* at = size >= sizeof(Header) ? mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    ::close(fd);
    if (at == MAP_FAILED) {
      why = kj::str(path, " is not a copy of pages");
      return {};
    }
    const auto* h = static_cast<const Header*>(at);
    bool ok = memcmp(h->magic, kMagic, sizeof h->magic) == 0 && h->count < size / sizeof(PageRun) &&
              headerBytes(h->count) <= size;
    kj::Array<PageRun> runs;
    if (ok) {
      runs = kj::heapArray(reinterpret_cast<const PageRun*>(h + 1), h->count);
      for (auto& r : runs) ok = ok && r.offset >= headerBytes(h->count) && r.offset <= size && r.len <= size - r.offset;
    }
    if (!ok || h->complete != 1) {
      why = kj::str(path, ok ? " is incomplete (its sender died while copying)" : " is not a copy of pages");
      munmap(at, size);
      return {};
    }
    return kj::heap<PageCopy>(at, size, kj::mv(runs));
  }

  PageCopy(void* at, uint64_t size, kj::Array<PageRun> runs) : at_(at), size_(size), runs_(kj::mv(runs)) {}
  ~PageCopy() { munmap(at_, size_); }
  KJ_DISALLOW_COPY(PageCopy);

  kj::ArrayPtr<const PageRun> runs() const { return runs_; }
  char* bytes(const PageRun& r) { return static_cast<char*>(at_) + r.offset; }
  // Every run is in the copy: it may be served without its sender.
  void markComplete() { static_cast<Header*>(at_)->complete = 1; }

  // The run holding `addr`, or null.
  const PageRun* find(uint64_t addr) const {
    for (auto& r : runs_) {
      if (r.addr <= addr && addr < r.addr + r.len) return &r;
    }
    return nullptr;
  }

 private:
  struct Header {
    char magic[8];
    uint64_t count;
    uint64_t complete;
  };
  static constexpr char kMagic[8] = {'M', 'I', 'G', 'P', 'A', 'G', 'E', '1'};
  static uint64_t headerBytes(uint64_t count) {
    return (sizeof(Header) + count * sizeof(PageRun) + 4095) / 4096 * 4096;
  }
  void* at_;
  uint64_t size_;
  kj::Array<PageRun> runs_;
};

}  // namespace mig::shadow
