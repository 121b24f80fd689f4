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
#include "resources/socket_state.h"

#include <cstdio>
#include <fcntl.h>
#include <sys/socket.h>

namespace mig::resources {
namespace {

bool matches(const FdProbe&, const CaptureContext&) { return true; }

// A socket no socket kind took (a Unix socket connected to another process, netlink,
// packet...) cannot come back from an image: the checkpoint says so, not only the restart.
void capture(const FdProbe& p, const CaptureContext& ctx, FdRecord::Builder) {
  if (ctx.options.forMigration || ctx.warnings == nullptr || sockets::socketInode(p.target) == 0) return;
  kj::AutoCloseFd copy = sockets::copyOf(ctx, p.fd);
  const int family = copy == nullptr ? -1 : sockets::intOption(copy, SOL_SOCKET, SO_DOMAIN, -1);
  const char* what = "a socket of a kind mig does not save";
  if (family == AF_UNIX) {
    what = "a Unix socket connected outside the process (to another process, or to a peer now gone)";
  }
  if (family == AF_NETLINK) what = "a netlink socket";
  if (family == AF_PACKET) what = "a packet socket";
  ctx.warnings->add(kj::str("fd ", p.fd, " (", p.target.c_str(), ") is ", what,
                            "; a restart gives the fd migctl restart has at that number, else /dev/null"));
}

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
    .capture = capture,
    .restore = restore,
};

}  // namespace mig::resources
