// Everything the other kinds do not know: terminals, sockets, pipes to another
// process (what earlier images call "inherited"). Nothing of them is saved but the
// generic fields. On a restart the fd of that number that `migctl restart` was given
// by its caller stands in (the terminal or pipe it runs with), else /dev/null (reads
// end of file, takes writes) and a warning. Never an fd migctl opened itself: the
// image, the plan or a file a kind reopened may sit at that number (CallerFds).
// On migration they stay at home, open in the deputy, and the job gets a readiness
// stand-in (shim/forward/readiness_stand_in.h): event loops waiting on them still wake.
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"

#include <cstdio>
#include <fcntl.h>

namespace mig::resources {
namespace {

bool matches(const FdProbe&, const CaptureContext&) { return true; }

void restore(FdRecord::Reader f, RestoreContext& ctx) {
  int target = f.getFd();
  if (ctx.caller.inherited(target)) {
    fcntl(target, F_SETFD, 0);
    return;
  }
  placeAt(kj::AutoCloseFd(open("/dev/null", O_RDWR)), target);
  dprintf(ctx.warnFd, "migctl restart: fd %d (%s) cannot be restored here; it is /dev/null now\n", target,
          f.getPath().cStr());
}

}  // namespace

extern const FdKind kHomeStream = {
    .kind = FdRecord::Kind::INHERITED,
    .name = "home_stream",
    .onMigration = OnMigration::homeStream,
    .matches = matches,
    .restore = restore,
};

}  // namespace mig::resources
