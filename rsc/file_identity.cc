// rsc/file_identity.cc: the home side of the file identity check (file_identity.h),
// the function the deputy runs for the FileIdentity row: the size and content hash of
// a file at home, hashed once per (device, inode, size, mtime) for as long as the
// deputy lives. The shim computes the same on the job's host and compares.
#include "rsc/file_identity.h"
#include "rsc/child_locks.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mig::rsc {
namespace {

HashCache<1024> g_cache;
std::mutex g_hashing;  // one file hashed at a time: the deputy's workers share the cache

}  // namespace
}  // namespace mig::rsc

// Called by name through the rsc dispatcher (row FileIdentity): -1 and errno like a libc
// function. Follows symlinks, as the open it stands for would. The deputy's fd numbers
// are the job's (the shim moves new home fds onto chosen numbers), so the file is held
// open only from the open to the mmap, and not at all when its hash is cached.
extern "C" __attribute__((visibility("default"))) int mig_file_identity(int dirfd, const char* path,
                                                                        mig::rsc::FileIdentity* out) {
  using namespace mig::rsc;
  memset(out, 0, sizeof(*out));
  auto describe = [out](const struct stat& st) {
    out->size = static_cast<uint64_t>(st.st_size);
    out->mtimeNs = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    out->regular = S_ISREG(st.st_mode) ? 1 : 0;
    return HashCache<1024>::Key{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), out->size,
                                out->mtimeNs};
  };
  struct stat st {};
  if (fstatat(dirfd, path, &st, 0) != 0) return -1;
  auto key = describe(st);
  if (out->regular == 0) return 0;  // nothing to compare: the shim opens it at home
  std::lock_guard<std::mutex> lock(g_hashing);
  if (g_cache.find(key, out->hash)) return 0;
  int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return -1;
  void* m = MAP_FAILED;
  if (fstat(fd, &st) == 0) {
    key = describe(st);  // the file opened, should it have been replaced since
    if (out->regular == 1 && out->size > 0) m = mmap(nullptr, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
  }
  int e = errno;
  close(fd);
  if (out->regular == 0) return 0;
  if (out->size == 0) {
    out->hash = contentHash(nullptr, 0);
  } else if (m == MAP_FAILED) {
    errno = e;
    return -1;
  } else {
    out->hash = contentHash(m, out->size);
    munmap(m, out->size);
  }
  g_cache.put(key, out->hash);
  return 0;
}

namespace mig::rsc {

// The functions of mig's own that rows name (besides libc's): the dispatcher takes
// them from here, so the deputy need not export them.
void* ownFunction(const char* name) {
  if (strcmp(name, "mig_file_identity") == 0) return reinterpret_cast<void*>(&mig_file_identity);
  if (strcmp(name, "mig_child_lock") == 0) return reinterpret_cast<void*>(&mig_child_lock);  // child_locks.h
  return nullptr;
}

}  // namespace mig::rsc
