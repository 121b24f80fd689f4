// rsc/file_identity.cc: the home side of the file identity check (file_identity.h),
// the function the deputy runs for the FileIdentity row: the size and content hash of
// a file at home, hashed once per (device, inode, size, mtime) for as long as the
// deputy lives. The shim computes the same on the job's host and compares.
#include "rsc/file_identity.h"

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
// function. Follows symlinks, as the open it stands for would.
extern "C" __attribute__((visibility("default"))) int mig_file_identity(int dirfd, const char* path,
                                                                        mig::rsc::FileIdentity* out) {
  using namespace mig::rsc;
  memset(out, 0, sizeof(*out));
  int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return -1;
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  out->size = static_cast<uint64_t>(st.st_size);
  out->mtimeNs = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  out->regular = S_ISREG(st.st_mode) ? 1 : 0;
  if (out->regular == 0) {
    close(fd);
    return 0;  // nothing to compare: the shim opens it at home
  }
  const HashCache<1024>::Key key{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), out->size,
                                 out->mtimeNs};
  std::lock_guard<std::mutex> lock(g_hashing);
  if (g_cache.find(key, out->hash)) {
    close(fd);
    return 0;
  }
  if (out->size == 0) {
    out->hash = contentHash(nullptr, 0);
  } else {
    void* m = mmap(nullptr, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      close(fd);
      errno = e;
      return -1;
    }
    out->hash = contentHash(m, out->size);
    munmap(m, out->size);
  }
  close(fd);
  g_cache.put(key, out->hash);
  return 0;
}

namespace mig::rsc {

// The functions of mig's own that rows name (besides libc's): the dispatcher takes
// them from here, so the deputy need not export them.
void* ownFunction(const char* name) {
  if (strcmp(name, "mig_file_identity") == 0) return reinterpret_cast<void*>(&mig_file_identity);
  return nullptr;
}

}  // namespace mig::rsc
