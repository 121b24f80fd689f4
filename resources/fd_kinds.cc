// See fd_kinds.h. The one place that lists the kinds: adding a kind is a file of its
// own, one enum value in image.capnp and one line here.
#include "resources/fd_kinds.h"

#include "image/image_error.h"

#include <kj/debug.h>

#include <array>

namespace mig::resources {

// Defined in the kinds' own files.
extern const FdKind kEventfd, kTimerfd, kSignalfd, kEpoll, kRegularFile, kDeletedFile, kDevice, kPipe, kInetSocket,
    kUnixSocket, kHomeStream;

namespace {

// Anonymous-inode objects first (their targets are not paths), files before devices
// before pipes, sockets the process owns alone after, and the home stream last: it
// takes whatever no other kind knows (terminal, a socket or pipe to another process).
constexpr std::array<const FdKind*, 11> kKinds = {
    &kEventfd, &kTimerfd, &kSignalfd, &kEpoll, &kRegularFile, &kDeletedFile, &kDevice, &kPipe, &kInetSocket,
    &kUnixSocket, &kHomeStream,
};

}  // namespace

kj::ArrayPtr<const FdKind* const> fdKinds() { return kj::arrayPtr(kKinds.data(), kKinds.size()); }

const FdKind& detectKind(const FdProbe& probe, const CaptureContext& ctx) {
  for (const FdKind* k : kKinds) {
    if (k->matches(probe, ctx)) return *k;
  }
  KJ_FAIL_ASSERT("the last fd kind takes every fd", probe.fd);
}

const FdKind& kindOf(FdRecord::Kind kind) {
  for (const FdKind* k : kKinds) {
    if (k->kind == kind) return *k;
  }
  image::fail(kj::str("no fd kind for image kind ", static_cast<uint16_t>(kind)));
}

}  // namespace mig::resources
