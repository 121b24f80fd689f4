// Regular files and directories, open under a path that still names them: saved as
// their path, offset and a consistency record (inode, device, size, mtime, ctime);
// reopened by path at restart, which refuses a file that changed since the checkpoint
// unless --force. The ctime is what catches a file written in place at the same size
// whose mtime was put back (touch -d, utimensat): the kernel sets ctime to now on every
// such change and no call lets a user set it. A ctime alone would also refuse a file
// whose bytes were put back as they were, or that was only chmod'ed: so a checkpoint
// also keeps a hash of each file up to 8 MiB, and a file whose ctime moved is refused
// only if its contents differ (or were too large to hash). On migration they stay at home (the job's data files may exist only there).
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"

#include "image/checksum.h"
#include "image/image_error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mig::resources {
namespace {

int64_t mtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

int64_t ctimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
}

// Files up to this size have their contents hashed at checkpoint (a few ms at most).
constexpr uint64_t kHashedFileBytes = 8ull << 20;

// XXH3-64 of the file at `path` (never 0), or 0 if it cannot be read to its end.
uint64_t contentHash(const char* path) {
  kj::AutoCloseFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (fd == nullptr) return 0;
  image::Checksummer sum;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) sum.update(buf, static_cast<size_t>(n));
  if (n < 0) return 0;
  const uint64_t h = sum.digest();
  return h != 0 ? h : 1;
}

bool matches(const FdProbe& p, const CaptureContext&) {
  return !p.deleted && p.path[0] == '/' && (S_ISREG(p.st.st_mode) || S_ISDIR(p.st.st_mode));
}

void capture(const FdProbe& p, const CaptureContext& ctx, FdRecord::Builder out) {
  auto file = out.getFile();
  file.setInode(p.st.st_ino);
  file.setDevice(p.st.st_dev);
  file.setSize(static_cast<uint64_t>(p.st.st_size));
  file.setMtimeNs(mtimeNs(p.st));
  file.setCtimeNs(ctimeNs(p.st));
  if (S_ISREG(p.st.st_mode) && static_cast<uint64_t>(p.st.st_size) <= kHashedFileBytes && !ctx.options.forMigration) {
    file.setContentHash(contentHash(ctx.linkOf(p.fd).c_str()));
  }
}

void check(FdRecord::Reader f, const CheckContext& ctx) {
  if (f.getDupOf() >= 0 || ctx.migrated) return;  // a migrated job's files are at home, not here
  struct stat st {};
  if (stat(f.getPath().cStr(), &st) != 0) {
    image::fail(kj::str("file ", f.getPath(), " (fd ", f.getFd(), ") is missing: ", strerror(errno)));
  }
  if (ctx.force || S_ISDIR(st.st_mode)) return;
  auto saved = f.getFile();
  if (st.st_ino != saved.getInode() || st.st_dev != saved.getDevice() ||
      static_cast<uint64_t>(st.st_size) != saved.getSize() || mtimeNs(st) != saved.getMtimeNs()) {
    image::fail(kj::str("file ", f.getPath(), " (fd ", f.getFd(),
                        ") changed since the checkpoint; restart with --force to use it as it is now"));
  }
  if (saved.getCtimeNs() != 0 && ctimeNs(st) != saved.getCtimeNs() &&
      (saved.getContentHash() == 0 || contentHash(f.getPath().cStr()) != saved.getContentHash())) {
    image::fail(kj::str("file ", f.getPath(), " (fd ", f.getFd(), ") changed since the checkpoint (",
                        saved.getContentHash() != 0 ? "written in place: its contents differ"
                                                    : "its ctime moved, and it is too large to compare its contents",
                        "); restart with --force to use it as it is now"));
  }
}

void restore(FdRecord::Reader f, RestoreContext&) { reopenSaved(f, f.getPath().cStr()); }

}  // namespace

extern const FdKind kRegularFile = {
    .kind = FdRecord::Kind::FILE,
    .name = "regular_file",
    .onMigration = OnMigration::home,
    .matches = matches,
    .capture = capture,
    .check = check,
    .restore = restore,
};

}  // namespace mig::resources
