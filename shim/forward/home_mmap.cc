// See home_mmap.h.
#include "shim/forward/home_mmap.h"

#include "rsc/forward_table.h"
#include "rsc/wire.h"
#include "shim/forward/child_table.h"
#include "shim/forward/shared_file_mapping.h"
#include "shim/forward/state.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <fcntl.h>
#include <linux/mman.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>

namespace mig::forward {

using shim::rawSyscall;

namespace {

State& state() { return shim::g_runtime.forward; }

// Flags of the caller's that an anonymous private mapping keeps: where it goes and how
// it is reserved. The type (shared or private), and file-only flags (MAP_SYNC,
// MAP_DENYWRITE...), are not.
constexpr int64_t kKeptFlags = MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_NORESERVE | MAP_POPULATE | MAP_LOCKED | MAP_32BIT |
                               MAP_GROWSDOWN | MAP_STACK | MAP_NONBLOCK;

bool isError(long r) { return r < 0 && r > -4096; }

}  // namespace

long mapHomeFile(const TrappedCall& c) {
  const int64_t* a = c.a;
  const uint64_t length = static_cast<uint64_t>(a[1]);
  const int64_t prot = a[2], flags = a[3], offset = a[5];
  const int64_t type = flags & MAP_TYPE;
  const bool sharedWritable = (type == MAP_SHARED || type == MAP_SHARED_VALIDATE) && (prot & PROT_WRITE) != 0;
  if (type != MAP_PRIVATE && type != MAP_SHARED && type != MAP_SHARED_VALIDATE) return -EINVAL;
  // Only a file whose sharing the job orders with locks through this fd can be kept
  // coherent at those locks (shared_file_mapping.h); any other stays refused.
  if (sharedWritable && !isLockedFd(state(), a[4])) return -ENODEV;
  if (length == 0 || (offset & 4095) != 0 || offset < 0) return -EINVAL;
  if (isStreamFd(state(), fdArg(a[4]))) return -ENODEV;  // a pipe, socket or terminal
  // What the fd is at home: a regular file is copied up to its end; /dev/zero (the old
  // way to ask for anonymous memory) needs no copy; nothing else can be mapped here.
  const int homeFd = homeFdOf(fdArg(a[4]));
  struct stat st {};
  if (long r = forwardSyscall(SYS_newfstatat, homeFd, reinterpret_cast<int64_t>(""), reinterpret_cast<int64_t>(&st),
                              AT_EMPTY_PATH);
      r != 0) {
    return r;
  }
  if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 5)) {
    const int64_t sharing = type == MAP_PRIVATE ? MAP_PRIVATE : MAP_SHARED;
    return rawSyscall(SYS_mmap, a[0], static_cast<long>(length), prot, (flags & kKeptFlags) | sharing | MAP_ANONYMOUS,
                      -1, 0);
  }
  if (!S_ISREG(st.st_mode)) return -ENODEV;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint64_t inFile = size > static_cast<uint64_t>(offset) ? size - static_cast<uint64_t>(offset) : 0;
  const uint64_t toCopy = inFile < length ? inFile : length;
  long m = rawSyscall(SYS_mmap, a[0], static_cast<long>(length), PROT_READ | PROT_WRITE,
                      (flags & kKeptFlags) | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (isError(m)) return m;
  // The file's bytes from home, straight into the mapping: pread at the mapping's offset
  // in pieces the link carries, until the end of the mapping or of the file.
  const rsc::Row& pread = rsc::rowOf(rsc::CallId::Pread64);
  uint64_t done = 0;
  while (done < toCopy) {
    const uint64_t want = toCopy - done < rsc::kMaxIo ? toCopy - done : rsc::kMaxIo;
    int64_t args[6] = {
        homeFd, m + static_cast<int64_t>(done), static_cast<int64_t>(want), offset + static_cast<int64_t>(done), 0, 0};
    long r = forwardRow(pread, args);
    if (r < 0) {
      rawSyscall(SYS_munmap, m, static_cast<long>(length));
      return r;
    }
    if (r == 0) break;  // end of the file: the rest stays zeros
    done += static_cast<uint64_t>(r);
  }
  // Shared and writable: the copy is kept coherent with the file at its lock points.
  if (sharedWritable) {
    if (prot != (PROT_READ | PROT_WRITE) && isError(rawSyscall(SYS_mprotect, m, static_cast<long>(length), prot))) {
      rawSyscall(SYS_munmap, m, static_cast<long>(length));
      return -ENOMEM;
    }
    return trackSharedMapping(m, c);
  }
  if (prot != (PROT_READ | PROT_WRITE)) {
    long r = rawSyscall(SYS_mprotect, m, static_cast<long>(length), prot);
    if (r != 0) {
      rawSyscall(SYS_munmap, m, static_cast<long>(length));
      return r;
    }
  }
  // Shared read-only, of a file the job locks through this fd: refreshed at those locks
  // (shared_file_mapping.h); else a snapshot.
  if (type != MAP_PRIVATE && isLockedFd(state(), a[4])) return trackSharedMapping(m, c);
  return m;
}

}  // namespace mig::forward
