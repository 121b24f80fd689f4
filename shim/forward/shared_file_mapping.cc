// See shared_file_mapping.h.
#include "shim/forward/shared_file_mapping.h"

#include "rsc/forward_table.h"
#include "rsc/open_rule.h"
#include "rsc/wire.h"
#include "shim/forward/child_table.h"
#include "shim/forward/page_diff.h"
#include "shim/forward/state.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>

namespace mig::forward {

using shim::rawSyscall;

namespace {

constexpr uint64_t kPage = 4096;

SharedMappings& table() { return shim::g_runtime.forward.sharedMappings; }

// The slots that may be in use, for a range-for.
struct UsedSlots {
  SharedMapping* b;
  SharedMapping* e;
  SharedMapping* begin() const { return b; }
  SharedMapping* end() const { return e; }
};
UsedSlots usedSlots() {
  SharedMappings& t = table();
  return UsedSlots{t.slots, t.slots + t.used.load(std::memory_order_acquire)};
}

bool isError(long r) { return r < 0 && r > -4096; }

uint64_t pageUp(uint64_t n) { return (n + kPage - 1) & ~(kPage - 1); }

uint8_t* local(const SharedMapping& m) { return reinterpret_cast<uint8_t*>(m.addr.load(std::memory_order_relaxed)); }
uint8_t* twin(const SharedMapping& m) { return reinterpret_cast<uint8_t*>(m.twin); }
uint8_t* scratch(const SharedMapping& m) { return reinterpret_cast<uint8_t*>(m.twin) + m.length; }

// A twin and a scratch area of `length` bytes each, in one anonymous mapping.
uint64_t newTwin(uint64_t length) {
  long t = rawSyscall(SYS_mmap, 0, static_cast<long>(2 * length), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
  return isError(t) ? 0 : static_cast<uint64_t>(t);
}

void freeSlot(SharedMapping& m) {
  if (m.twinBase != 0) rawSyscall(SYS_munmap, static_cast<long>(m.twinBase), static_cast<long>(m.twinBytes));
  m.twin = m.twinBase = m.twinBytes = 0;
  m.addr.store(0, std::memory_order_release);
}

// Reads (or writes) [off, off + len) of the fd's file at home, in pieces of at most
// rsc::kMaxIo; a read past the end of the file gives zeros (as the copy was made).
// Negative errno on failure.
long ioHome(bool read, int32_t fd, uint8_t* buf, uint64_t len, int64_t off) {
  const rsc::Row& row = rsc::rowOf(read ? rsc::CallId::Pread64 : rsc::CallId::Pwrite64);
  uint64_t done = 0;
  while (done < len) {
    const uint64_t want = len - done < rsc::kMaxIo ? len - done : rsc::kMaxIo;
    int64_t args[6] = {homeFdOf(fd), reinterpret_cast<int64_t>(buf + done), static_cast<int64_t>(want),
                       off + static_cast<int64_t>(done), 0, 0};
    long r = forwardRow(row, args);
    if (r < 0) return r;
    if (r == 0) {
      if (!read) return -EIO;
      __builtin_memset(buf + done, 0, len - done);
      break;
    }
    done += static_cast<uint64_t>(r);
  }
  return 0;
}

long preadHome(int32_t fd, uint8_t* buf, uint64_t len, int64_t off) { return ioHome(true, fd, buf, len, off); }

long pwriteHome(int32_t fd, const uint8_t* buf, uint64_t len, int64_t off) {
  return ioHome(false, fd, const_cast<uint8_t*>(buf), len, off);
}

// The bytes the job changed since the copy last agreed with home go home. Each run is
// taken from the copy once (into the scratch area), so home and the twin get the same
// value even if another thread stores to it meanwhile. A run that cannot be written
// stays different from its twin: tried again at the next lock point.
void writeBack(SharedMapping& m) {
  if (__atomic_load_n(&m.twin, __ATOMIC_ACQUIRE) == 0 || m.fd < 0 || (m.prot & PROT_WRITE) == 0 || local(m) == nullptr)
    return;
  uint8_t* copy = local(m);
  uint8_t* was = twin(m);
  uint8_t* buf = scratch(m);
  forEachChangedRunDescending(copy, was, m.length, [&](ByteRun r) {
    const uint64_t n = r.end - r.begin;
    __builtin_memcpy(buf + r.begin, copy + r.begin, n);
    if (pwriteHome(m.fd, buf + r.begin, n, m.fileOffset + static_cast<int64_t>(r.begin)) == 0) {
      __builtin_memcpy(was + r.begin, buf + r.begin, n);
    }
  });
}

// A read-only mapping's copy made writable for the shim while it takes home's bytes in
// (the application's threads may read it meanwhile, never write it).
class WritableWhile {
 public:
  explicit WritableWhile(const SharedMapping& m) : m_(m) {
    if ((m.prot & PROT_WRITE) == 0) {
      changed_ = true;
      ok_ = rawSyscall(SYS_mprotect, static_cast<long>(m.addr.load()), static_cast<long>(m.length),
                       static_cast<long>(m.prot | PROT_READ | PROT_WRITE)) == 0;
    }
  }
  ~WritableWhile() {
    if (changed_ && ok_) {
      rawSyscall(SYS_mprotect, static_cast<long>(m_.addr.load()), static_cast<long>(m_.length),
                 static_cast<long>(m_.prot));
    }
  }
  bool ok() const { return ok_; }

 private:
  const SharedMapping& m_;
  bool changed_ = false, ok_ = true;
};

// Home's changes since the copy last agreed with it, into the copy.
void takeHomeChangesOf(SharedMapping& m) {
  if (__atomic_load_n(&m.twin, __ATOMIC_ACQUIRE) == 0 || m.fd < 0 || local(m) == nullptr) return;
  if (preadHome(m.fd, scratch(m), m.length, m.fileOffset) != 0) return;  // the next lock point tries again
  WritableWhile writable(m);
  if (writable.ok()) takeHomeChanges(local(m), twin(m), scratch(m), m.length);
}

// The whole copy read again from home (after a restore, or after madvise dropped its
// pages), and the twin with it. On failure the copy keeps what it has and its twin
// says so: the next lock point compares again.
void rereadWhole(SharedMapping& m) {
  if (m.fd < 0 || m.twin == 0 || local(m) == nullptr) return;
  WritableWhile writable(m);
  if (!writable.ok() || preadHome(m.fd, scratch(m), m.length, m.fileOffset) != 0) {
    __builtin_memcpy(twin(m), local(m), m.length);
    return;
  }
  __builtin_memcpy(local(m), scratch(m), m.length);
  __builtin_memcpy(twin(m), scratch(m), m.length);
}

bool overlaps(const SharedMapping& m, uint64_t start, uint64_t len) {
  const uint64_t a = m.addr.load(std::memory_order_acquire);
  return a != 0 && start < a + m.length && a < start + len;
}

SharedMapping* freeSlotFor(uint64_t addr) {
  SharedMappings& t = table();
  for (uint32_t i = 0; i < kMaxSharedMappings; ++i) {
    SharedMapping& m = t.slots[i];
    uint64_t expected = 0;
    if (m.addr.load(std::memory_order_relaxed) == 0 &&
        m.addr.compare_exchange_strong(expected, addr, std::memory_order_acq_rel)) {
      uint32_t used = t.used.load(std::memory_order_acquire);
      while (used < i + 1 && !t.used.compare_exchange_weak(used, i + 1, std::memory_order_acq_rel)) {}
      return &m;
    }
  }
  return nullptr;
}

// [start, start + len) leaves the mapping m (munmap, mremap): what is left of m stays
// tracked; a hole in its middle makes a second slot for the part after it.
void cutOut(SharedMapping& m, uint64_t start, uint64_t len) {
  const uint64_t a = m.addr.load(std::memory_order_acquire), end = a + m.length;
  const uint64_t cutStart = start > a ? start : a, cutEnd = start + len < end ? start + len : end;
  if (cutStart == a && cutEnd == end) {
    freeSlot(m);
    return;
  }
  if (cutEnd < end && cutStart > a) {  // a hole: the part after it gets a slot of its own
    const uint64_t afterLen = end - cutEnd;
    const uint64_t t = newTwin(afterLen);
    SharedMapping* after = t != 0 ? freeSlotFor(cutEnd) : nullptr;
    if (after != nullptr) {
      after->length = afterLen;
      after->fileOffset = m.fileOffset + static_cast<int64_t>(cutEnd - a);
      after->fd = m.fd;
      after->prot = m.prot;
      after->reread = m.reread;
      after->twin = after->twinBase = t;
      after->twinBytes = 2 * afterLen;
      __builtin_memcpy(twin(*after), twin(m) + (cutEnd - a), afterLen);
    } else if (t != 0) {
      rawSyscall(SYS_munmap, static_cast<long>(t), static_cast<long>(2 * afterLen));
    }
    m.length = cutStart - a;  // the scratch area moves down inside the same allocation
    return;
  }
  if (cutStart == a) {  // the front goes: the twin's front with it
    const uint64_t gone = cutEnd - a;
    m.twin += gone;
    m.fileOffset += static_cast<int64_t>(gone);
    m.length -= gone;
    m.addr.store(cutEnd, std::memory_order_release);
    return;
  }
  m.length = cutStart - a;  // the end goes
}

// The fcntl commands that take or release a lock.
bool isSetLock(int64_t cmd) { return cmd == F_SETLK || cmd == F_SETLKW || cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW; }

}  // namespace

long trackSharedMapping(long addr, const TrappedCall& c) {
  const uint64_t length = pageUp(static_cast<uint64_t>(c.a[1]));
  const uint64_t t = newTwin(length);
  SharedMapping* m = t != 0 ? freeSlotFor(static_cast<uint64_t>(addr)) : nullptr;
  if (m == nullptr) {
    if (t != 0) rawSyscall(SYS_munmap, static_cast<long>(t), static_cast<long>(2 * length));
    rawSyscall(SYS_munmap, addr, static_cast<long>(length));
    return -ENOMEM;
  }
  m->length = length;
  m->fileOffset = c.a[5];
  m->fd = fdArg(c.a[4]);
  m->prot = static_cast<uint32_t>(c.a[2]);
  m->reread = 0;
  m->twinBase = t;
  m->twinBytes = 2 * length;
  __builtin_memcpy(reinterpret_cast<void*>(t), reinterpret_cast<const void*>(addr), length);
  // Last: a lock call of another thread uses the slot only once its twin is there.
  __atomic_store_n(&m->twin, t, __ATOMIC_RELEASE);
  return addr;
}

bool fdHasSharedMappings(int32_t fd) {
  if (fd < 0) return false;
  for (const auto& m : usedSlots()) {
    if (m.addr.load(std::memory_order_acquire) != 0 && m.fd == fd) return true;
  }
  return false;
}

bool isSharedMappingLockCall(const TrappedCall& c) {
  if (c.nr == SYS_fcntl && !isSetLock(c.a[1])) return false;
  if (c.nr != SYS_fcntl && c.nr != SYS_flock) return false;
  return fdHasSharedMappings(fdArg(c.a[0]));
}

bool isLockTaking(const TrappedCall& c) {
  if (c.nr == SYS_flock) return (c.a[1] & LOCK_UN) == 0;
  if (c.nr != SYS_fcntl || !isSetLock(c.a[1])) return false;
  const auto* fl = reinterpret_cast<const struct flock*>(c.a[2]);
  return fl != nullptr && fl->l_type != F_UNLCK;
}

bool beforeLockCall(const TrappedCall& c) {
  const int32_t fd = fdArg(c.a[0]);
  const bool taking = isLockTaking(c);
  for (auto& m : usedSlots()) {
    if (m.addr.load(std::memory_order_acquire) != 0 && m.fd == fd) writeBack(m);
  }
  return taking;
}

void afterLockTaken(int32_t fd) {
  for (auto& m : usedSlots()) {
    if (m.addr.load(std::memory_order_acquire) != 0 && m.fd == fd) takeHomeChangesOf(m);
  }
}

void beforeRangeCall(const TrappedCall& c) {
  const uint64_t start = static_cast<uint64_t>(c.a[0]), len = pageUp(static_cast<uint64_t>(c.a[1]));
  for (auto& m : usedSlots()) {
    if (!overlaps(m, start, len)) continue;
    writeBack(m);
    if (c.nr == SYS_munmap || c.nr == SYS_mremap) cutOut(m, start, len);
  }
}

void afterRangeCall(const TrappedCall& c, long result) {
  if (result != 0) return;
  if (c.nr == SYS_msync) {  // a point of coherence both ways: home's changes come in too
    const uint64_t start = static_cast<uint64_t>(c.a[0]), len = pageUp(static_cast<uint64_t>(c.a[1]));
    for (auto& m : usedSlots()) {
      if (overlaps(m, start, len)) takeHomeChangesOf(m);
    }
    return;
  }
  if (c.nr != SYS_madvise) return;
  const int64_t advice = c.a[2];
  if (advice != MADV_DONTNEED && advice != MADV_FREE && advice != MADV_REMOVE && advice != MADV_DONTNEED_LOCKED) return;
  const uint64_t start = static_cast<uint64_t>(c.a[0]), len = pageUp(static_cast<uint64_t>(c.a[1]));
  for (auto& m : usedSlots()) {
    if (overlaps(m, start, len)) rereadWhole(m);
  }
}

void beforeFdsClosed(uint32_t first, uint32_t last) {
  for (auto& m : usedSlots()) {
    if (m.addr.load(std::memory_order_acquire) == 0 || m.fd < 0) continue;
    if (static_cast<uint32_t>(m.fd) < first || static_cast<uint32_t>(m.fd) > last) continue;
    writeBack(m);
    m.fd = -1;
  }
}

void beforeFdClosed(int32_t fd) {
  if (fd >= 0) beforeFdsClosed(static_cast<uint32_t>(fd), static_cast<uint32_t>(fd));
}

namespace {

// /proc/self/maps, a line at a time, with raw system calls and a buffer of our own.
class MapsReader {
 public:
  MapsReader()
      : fd_(static_cast<int>(
            rawSyscall(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/proc/self/maps"), O_RDONLY | O_CLOEXEC))) {}
  ~MapsReader() {
    if (fd_ >= 0) rawSyscall(SYS_close, fd_);
  }
  // The next line, NUL-terminated (longer lines are cut), or null at the end.
  const char* next() {
    for (;;) {
      for (size_t i = pos_; i < len_; ++i) {
        if (buf_[i] != '\n') continue;
        buf_[i] = '\0';
        const char* line = buf_ + pos_;
        pos_ = i + 1;
        return line;
      }
      if (fd_ < 0) return nullptr;
      if (pos_ > 0) {
        __builtin_memmove(buf_, buf_ + pos_, len_ - pos_);
        len_ -= pos_;
        pos_ = 0;
      }
      if (len_ == sizeof(buf_) - 1) len_ = 0;  // a line longer than the buffer: dropped
      long n =
          rawSyscall(SYS_read, fd_, reinterpret_cast<long>(buf_ + len_), static_cast<long>(sizeof(buf_) - 1 - len_));
      if (n <= 0) return nullptr;
      len_ += static_cast<size_t>(n);
    }
  }

 private:
  int fd_;
  char buf_[8192];
  size_t pos_ = 0, len_ = 0;
};

uint64_t hexField(const char*& p) {
  uint64_t v = 0;
  for (;; ++p) {
    const char ch = *p;
    if (ch >= '0' && ch <= '9')
      v = v * 16 + static_cast<uint64_t>(ch - '0');
    else if (ch >= 'a' && ch <= 'f')
      v = v * 16 + static_cast<uint64_t>(ch - 'a' + 10);
    else
      break;
  }
  return v;
}

uint64_t decField(const char*& p) {
  uint64_t v = 0;
  for (; *p >= '0' && *p <= '9'; ++p) v = v * 10 + static_cast<uint64_t>(*p - '0');
  return v;
}

bool endsWith(const char* s, const char* tail) {
  const size_t n = __builtin_strlen(s), m = __builtin_strlen(tail);
  return n >= m && __builtin_memcmp(s + n - m, tail, m) == 0;
}

bool startsWith(const char* s, const char* head) { return __builtin_strncmp(s, head, __builtin_strlen(head)) == 0; }

// Does /proc/self/fdinfo/FD list a lock (taken through that fd's open file)?
bool fdHoldsLock(int32_t fd) {
  char path[40] = "/proc/self/fdinfo/";
  char digits[12];
  int n = 0;
  for (uint32_t v = static_cast<uint32_t>(fd);; v /= 10) {
    digits[n++] = static_cast<char>('0' + v % 10);
    if (v < 10) break;
  }
  size_t at = __builtin_strlen(path);
  while (n > 0) path[at++] = digits[--n];
  path[at] = '\0';
  const int f = static_cast<int>(rawSyscall(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_RDONLY | O_CLOEXEC));
  if (f < 0) return false;
  char buf[1024];
  const long got = rawSyscall(SYS_read, f, reinterpret_cast<long>(buf), sizeof(buf) - 1);
  rawSyscall(SYS_close, f);
  if (got <= 0) return false;
  buf[got] = '\0';
  for (const char* p = buf; *p != '\0'; ++p) {
    if ((p == buf || p[-1] == '\n') && startsWith(p, "lock:")) return true;
  }
  return false;
}

// Calls f(fd) for each fd of this process (/proc/self/fd), its own listing fd aside,
// while f returns true.
template <typename F>
void forEachFd(F&& f) {
  int dir = static_cast<int>(
      rawSyscall(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/proc/self/fd"), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir < 0) return;
  alignas(8) char buf[4096];
  bool more = true;
  while (more) {
    long n = rawSyscall(SYS_getdents64, dir, reinterpret_cast<long>(buf), sizeof(buf));
    if (n <= 0) break;
    for (long at = 0; at < n && more;) {
      const auto* d = reinterpret_cast<const struct dirent64*>(buf + at);
      at += d->d_reclen;
      const char* name = d->d_name;
      if (*name < '0' || *name > '9') continue;
      const int32_t fd = static_cast<int32_t>(decField(name));
      if (fd != dir) more = f(fd);
    }
  }
  rawSyscall(SYS_close, dir);
}

// Which regular files the process holds locks through (State::lockedFds).
void listLockedFds() {
  State& st = shim::g_runtime.forward;
  __builtin_memset(st.lockedFds, 0, sizeof(st.lockedFds));
  forEachFd([&](int32_t fd) {
    struct stat sb {};
    if (rawSyscall(SYS_fstat, fd, reinterpret_cast<long>(&sb)) != 0 || !S_ISREG(sb.st_mode)) return true;
    if (fdHoldsLock(fd)) setLockedFd(st, fd, true);
    return true;
  });
}

// An fd of this process open on the file (device, inode), for reading and writing if
// `write`, one it holds a lock through if there is one; -1 when none.
int32_t fdOfFile(uint64_t dev, uint64_t inode, bool write) {
  const State& st = shim::g_runtime.forward;
  int32_t found = -1;
  forEachFd([&](int32_t fd) {
    struct stat sb {};
    if (rawSyscall(SYS_fstat, fd, reinterpret_cast<long>(&sb)) != 0) return true;
    if (!S_ISREG(sb.st_mode) || sb.st_dev != dev || sb.st_ino != inode) return true;
    const long fl = rawSyscall(SYS_fcntl, fd, F_GETFL);
    if (fl < 0 || (write && (fl & O_ACCMODE) != O_RDWR)) return true;
    if (found < 0 || isLockedFd(st, fd)) found = fd;
    return !isLockedFd(st, fd);
  });
  return found;
}

// The process's shared mappings of files at home that it holds locks on, as
// /proc/self/maps tells them, into the table (untracked: their twins are made after
// the restore).
void listSharedMappings() {
  for (auto& m : usedSlots()) {
    if (m.addr.load() != 0) freeSlot(m);
  }
  MapsReader maps;
  while (const char* line = maps.next()) {
    const char* p = line;
    const uint64_t start = hexField(p);
    if (*p++ != '-') continue;
    const uint64_t end = hexField(p);
    if (*p++ != ' ') continue;
    const char r = p[0], w = p[1], x = p[2], s = p[3];
    p += 4;
    if (s != 's') continue;
    if (*p++ != ' ') continue;
    const uint64_t offset = hexField(p);
    if (*p++ != ' ') continue;
    const uint64_t major = hexField(p);
    if (*p++ != ':') continue;
    const uint64_t minor = hexField(p);
    if (*p++ != ' ') continue;
    const uint64_t inode = decField(p);
    while (*p == ' ') ++p;
    // Files only: shared anonymous memory, memfds, deleted files and System V segments
    // are memory of their own (resources/shared_memory.cc), never home's file.
    if (*p != '/' || endsWith(p, " (deleted)") || startsWith(p, "/memfd:") || startsWith(p, "/SYSV")) continue;
    // A read-only one of a system file the next host has too is mapped from its own
    // copy there (resources/proc_page_source.cc): nothing to keep in step.
    const bool writable = w == 'w';
    if (!writable && rsc::openSide(p, O_RDONLY) == rsc::OpenSide::HereIfSameFile) continue;
    const int32_t fd = fdOfFile(makedev(major, minor), inode, writable);
    // Without an fd to write through, or without locks to keep it coherent at: a
    // writable one makes shadowd refuse the move before the freeze, a read-only one
    // travels as a snapshot.
    if (fd < 0 || !isLockedFd(shim::g_runtime.forward, fd)) continue;
    SharedMapping* m = freeSlotFor(start);
    if (m == nullptr) return;
    m->length = end - start;
    m->fileOffset = static_cast<int64_t>(offset);
    m->fd = fd;
    m->prot = (r == 'r' ? PROT_READ : 0) | (writable ? PROT_WRITE : 0) | (x == 'x' ? PROT_EXEC : 0);
    m->reread = 1;
    m->twin = m->twinBase = m->twinBytes = 0;
  }
}

}  // namespace

void prepareSharedMappingsForCheckpoint(bool migrated) {
  if (!migrated) {
    listLockedFds();
    listSharedMappings();
    return;
  }
  for (auto& m : usedSlots()) {
    if (m.addr.load(std::memory_order_acquire) == 0) continue;
    writeBack(m);
    m.reread = 1;
  }
}

void sharedMappingsAfterRestore(bool migrated) {
  for (auto& m : usedSlots()) {
    const uint64_t a = m.addr.load(std::memory_order_acquire);
    if (a == 0) continue;
    if (!migrated) {
      // Home again: the file itself, mapped in place of the copy (whose changes went
      // home before the checkpoint). A copy whose fd was closed stays what it is.
      if (m.fd >= 0) {
        rawSyscall(SYS_mmap, static_cast<long>(a), static_cast<long>(m.length), m.prot, MAP_SHARED | MAP_FIXED, m.fd,
                   m.fileOffset);
      }
      freeSlot(m);
      continue;
    }
    if (m.twin == 0) {
      const uint64_t t = newTwin(m.length);
      if (t == 0) {
        m.fd = -1;  // no memory for a twin: a snapshot from here on
        continue;
      }
      m.twin = m.twinBase = t;
      m.twinBytes = 2 * m.length;
    }
    if (m.reread != 0) rereadWhole(m);
    m.reread = 0;
  }
}

}  // namespace mig::forward
