// Everything the other kinds do not know: terminals, sockets, pipes to another
// process (what earlier images call "inherited"). Nothing of them is saved but the
// generic fields. On a restart the restarting command's own fd of that number stands
// in (the terminal or pipe `migctl restart` runs with), else /dev/null and a warning.
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
  if (fcntl(target, F_GETFD) >= 0) {
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
