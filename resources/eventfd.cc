// eventfd(2): its counter and EFD_SEMAPHORE, read from /proc/PID/fdinfo (the format
// of fs/eventfd.c's eventfd_show_fdinfo), come back exactly: a new eventfd with the
// counter written into it. A local kernel object: on migration it is made anew on
// the new host.
#include "resources/eventfd.h"

#include "image/image_error.h"
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"
#include "resources/proc_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace mig::resources {
namespace eventfd {

const char* parse(std::string_view text, Info& out) {
  // "eventfd-count: %16llx": hexadecimal, padded with blanks.
  if (!fdinfo::numberField(text, "eventfd-count", 16, out.count)) return "no readable eventfd-count line";
  std::string_view v;
  out.semaphore = false;
  if (field(text, "eventfd-semaphore", v)) {
    unsigned s = 0;
    if (!fdinfo::number(v, 10, s) || s > 1) return "an unreadable eventfd-semaphore line";
    out.semaphore = s == 1;
  }
  return nullptr;
}

}  // namespace eventfd

namespace {

bool matches(const FdProbe& p, const CaptureContext&) { return p.target == "anon_inode:[eventfd]"; }

void capture(const FdProbe& p, const CaptureContext& ctx, FdRecord::Builder out) {
  eventfd::Info e;
  if (const char* why = eventfd::parse(fdinfo::read(ctx.pid, p.fd), e)) fdinfo::unreadable(ctx.pid, p.fd, "eventfd", why);
  out.getEventfd().setCount(e.count);
  out.getEventfd().setSemaphore(e.semaphore);
}

void restore(FdRecord::Reader f, RestoreContext&) {
  int nonblock = (f.getFlags() & O_NONBLOCK) ? EFD_NONBLOCK : 0;
  kj::AutoCloseFd fd(::eventfd(0, nonblock | (f.getEventfd().getSemaphore() ? EFD_SEMAPHORE : 0)));
  if (fd == nullptr) image::fail(kj::str("cannot recreate eventfd fd ", f.getFd(), ": ", strerror(errno)));
  // eventfd() takes an unsigned int; a write adds any counter value up to 2^64-2.
  uint64_t count = f.getEventfd().getCount();
  if (count > 0 && write(fd, &count, sizeof(count)) != static_cast<ssize_t>(sizeof(count))) {
    image::fail(kj::str("cannot set the counter of eventfd fd ", f.getFd(), " to ", count, ": ", strerror(errno)));
  }
  placeAt(kj::mv(fd), f.getFd());
}

}  // namespace

extern const FdKind kEventfd = {
    .kind = FdRecord::Kind::EVENTFD,
    .name = "eventfd",
    .onMigration = OnMigration::recreated,
    .matches = matches,
    .capture = capture,
    .restore = restore,
};

}  // namespace mig::resources
