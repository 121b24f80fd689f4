// See same_file.h. The question to home is the FileIdentity row (forward_calls.def),
// which the deputy answers with rsc/file_identity.cc.
#include "shim/forward/same_file.h"

#include "rsc/file_identity.h"
#include "rsc/forward_table.h"
#include "shim/forward/state.h"
#include "shim/forward/trapped_call.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

namespace mig::forward {

using shim::rawSyscall;

long identityHere(int fd, FileIdentityHere& out) {
  struct stat st {};
  if (long r = rawSyscall(SYS_fstat, fd, reinterpret_cast<long>(&st)); r != 0) return r;
  if (!S_ISREG(st.st_mode)) return -EINVAL;
  out.size = static_cast<uint64_t>(st.st_size);
  const rsc::HashCache<kLocalHashSlots>::Key key{
      static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), out.size,
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
  auto& cache = shim::g_runtime.forward.localHashes;
  if (cache.find(key, out.hash)) return 0;
  if (out.size == 0) {
    out.hash = rsc::contentHash(nullptr, 0);
  } else {
    long m = rawSyscall(SYS_mmap, 0, static_cast<long>(out.size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (m < 0 && m > -4096) return m;
    out.hash = rsc::contentHash(reinterpret_cast<const void*>(m), out.size);
    rawSyscall(SYS_munmap, m, static_cast<long>(out.size));
  }
  cache.put(key, out.hash);
  return 0;
}

long openHereIfSame(const char* path, int64_t flags, int64_t mode) {
  // Only a regular file is opened for the check (a FIFO's open would wait for a writer).
  struct stat st {};
  if (rawSyscall(SYS_newfstatat, AT_FDCWD, reinterpret_cast<long>(path), reinterpret_cast<long>(&st), 0) != 0 ||
      !S_ISREG(st.st_mode)) {
    return kOpenAtHome;
  }
  long fd = rawSyscall(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), flags, mode);
  if (fd < 0) return kOpenAtHome;
  FileIdentityHere here{};
  rsc::FileIdentity home{};
  int64_t args[6] = {AT_FDCWD, reinterpret_cast<int64_t>(path), reinterpret_cast<int64_t>(&home), 0, 0, 0};
  if (identityHere(static_cast<int>(fd), here) == 0 && forwardRow(rsc::rowOf(rsc::CallId::FileIdentity), args) == 0 &&
      rsc::sameFile(home, rsc::FileIdentity{here.size, here.hash, 0, 1, 0})) {
    return fd;
  }
  rawSyscall(SYS_close, fd);
  return kOpenAtHome;
}

}  // namespace mig::forward
