// Regular files and directories, open under a path that still names them: saved as
// their path, offset and a consistency record (inode, device, size, mtime); reopened
// by path at restart, which refuses a file that changed since the checkpoint unless
// --force. On migration they stay at home (the job's data files may exist only there).
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"

#include "image/image_error.h"

#include <cerrno>
#include <cstring>
#include <sys/stat.h>

namespace mig::resources {
namespace {

int64_t mtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

bool matches(const FdProbe& p, const CaptureContext&) {
  return !p.deleted && p.path[0] == '/' && (S_ISREG(p.st.st_mode) || S_ISDIR(p.st.st_mode));
}

void capture(const FdProbe& p, const CaptureContext&, FdRecord::Builder out) {
  auto file = out.getFile();
  file.setInode(p.st.st_ino);
  file.setDevice(p.st.st_dev);
  file.setSize(static_cast<uint64_t>(p.st.st_size));
  file.setMtimeNs(mtimeNs(p.st));
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
