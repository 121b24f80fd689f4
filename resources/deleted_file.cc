// Files deleted while open (unlinked, or a directory removed under the process):
// the contents of a regular one go into the image (up to 256 MiB, migctl checkpoint
// --max-deleted-file); the restart recreates it next to where it was (or in /tmp),
// opens it with the saved flags and offset and deletes it again. On migration it stays
// at home, open in the deputy: its contents are not taken along.
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"

#include "image/image_error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace mig::resources {

extern const FdKind kRegularFile;

namespace {

using image::fail;

bool matches(const FdProbe& p, const CaptureContext&) {
  return p.deleted && p.path[0] == '/' && (S_ISREG(p.st.st_mode) || S_ISDIR(p.st.st_mode));
}

// One line for a file over the limit: which, how big, and the option that raises it.
[[noreturn]] void tooLarge(const FdProbe& p, uint64_t size, uint64_t limit) {
  fail(kj::str("deleted file ", p.path.c_str(), " (fd ", p.fd, ") is ", (size + (1 << 20) - 1) >> 20,
               " MiB, over the ", limit >> 20, " MiB a checkpoint keeps of a deleted file; raise the limit with ",
               "migctl checkpoint --max-deleted-file MIB (at most ", CaptureOptions::kMaxDeletedFileMiB,
               "), or let the job close the file first"));
}

std::string readAll(int fd, const FdProbe& p, uint64_t limit) {
  std::string s;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) {
    s.append(buf, static_cast<size_t>(n));
    if (s.size() > limit) tooLarge(p, s.size(), limit);  // it grew since its stat
  }
  return s;
}

void capture(const FdProbe& p, const CaptureContext& ctx, FdRecord::Builder out) {
  kRegularFile.capture(p, ctx, out);  // the same record (never checked: the file is gone)
  if (ctx.options.forMigration) return;  // it stays open at home in the deputy
  const uint64_t limit = ctx.options.maxDeletedFileBytes;
  if (S_ISREG(p.st.st_mode) && static_cast<uint64_t>(p.st.st_size) > limit) tooLarge(p, p.st.st_size, limit);
  kj::AutoCloseFd rfd(::open(ctx.linkOf(p.fd).c_str(), O_RDONLY | O_CLOEXEC));
  if (rfd == nullptr) fail(kj::str("cannot read deleted file ", p.path.c_str(), " (fd ", p.fd, "): ", strerror(errno)));
  std::string contents = readAll(rfd, p, limit);
  out.setContents(kj::arrayPtr(reinterpret_cast<const kj::byte*>(contents.data()), contents.size()));
}

void restore(FdRecord::Reader f, RestoreContext&) {
  std::string path = f.getPath().cStr();
  std::string dir = path.substr(0, path.rfind('/') + 1);
  struct stat st {};
  if (dir.empty() || stat(dir.c_str(), &st) != 0) dir = "/tmp/";
  std::string tmpl = dir + ".mig-deleted-XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  kj::AutoCloseFd w(mkstemp(name.data()));
  if (w == nullptr) fail(kj::str("cannot recreate deleted file ", f.getPath(), " in ", dir.c_str(), ": ", strerror(errno)));
  KJ_DEFER(unlink(name.data()));
  auto data = f.getContents();
  if (write(w, data.begin(), data.size()) != static_cast<ssize_t>(data.size())) {
    fail(kj::str("cannot write the contents of deleted file ", f.getPath()));
  }
  w = nullptr;  // before the reopen: its number may be the one the reopened file goes to
  reopenSaved(f, name.data());
}

}  // namespace

extern const FdKind kDeletedFile = {
    .kind = FdRecord::Kind::UNLINKED,
    .name = "deleted_file",
    .onMigration = OnMigration::home,
    .matches = matches,
    .capture = capture,
    .restore = restore,
};

}  // namespace mig::resources
