// signalfd(2): saved as its mask (fdinfo, fs/signalfd.c's signalfd_show_fdinfo) and
// made anew with it. The signals it reads are the process's pending signals, which
// the restorer queues again (threads.cc saves them). A local kernel object: on
// migration it is made anew on the new host.
#include "resources/signalfd.h"

#include "image/image_error.h"
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"
#include "resources/proc_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mig::resources {
namespace signalfd {

const char* parse(std::string_view text, uint64_t& sigmask) {
  if (!fdinfo::numberField(text, "sigmask", 16, sigmask)) return "no readable sigmask line";
  return nullptr;
}

}  // namespace signalfd

namespace {

bool matches(const FdProbe& p, const CaptureContext&) { return p.target == "anon_inode:[signalfd]"; }

void capture(const FdProbe& p, const CaptureContext& ctx, FdRecord::Builder out) {
  uint64_t mask = 0;
  if (const char* why = signalfd::parse(fdinfo::read(ctx.pid, p.fd), mask)) fdinfo::unreadable(ctx.pid, p.fd, "signalfd", why);
  out.getSignalfd().setSigmask(mask);
}

void restore(FdRecord::Reader f, RestoreContext&) {
  // The raw call takes all 64 signals; glibc's sigset helpers refuse its own (32, 33).
  uint64_t mask = f.getSignalfd().getSigmask();
  int flags = (f.getFlags() & O_NONBLOCK) ? O_NONBLOCK : 0;
  kj::AutoCloseFd fd(static_cast<int>(syscall(SYS_signalfd4, -1, &mask, sizeof(mask), flags)));
  if (fd == nullptr) image::fail(kj::str("cannot recreate signalfd fd ", f.getFd(), ": ", strerror(errno)));
  placeAt(kj::mv(fd), f.getFd());
}

}  // namespace

extern const FdKind kSignalfd = {
    .kind = FdRecord::Kind::SIGNALFD,
    .name = "signalfd",
    .onMigration = OnMigration::recreated,
    .matches = matches,
    .capture = capture,
    .restore = restore,
};

}  // namespace mig::resources
