// Recreating the event-loop kernel objects of an image in migctl restart (called by
// restart_files.cc): eventfds with their counter, timerfds with their clock, time
// left, period and unread expirations, signalfds with their mask, and epoll instances
// with every registration. These are local kernel objects: a migrated job gets new
// ones on its new host too, never forwarded home.
#pragma once

#include "image/image.capnp.h"
#include "shim/forward/forward_config.h"

#include <kj/array.h>

namespace mig::migctl {

// Is `kind` one of eventfd, timerfd, signalfd, epoll?
bool isEventKind(image::schema::FileDescriptor::Kind kind);

// A new object like the saved one (an epoll without its registrations yet), at the
// lowest free number, without close-on-exec: it must outlive the exec of the
// restorer, which sets the saved flag. Throws with
// a one-line message on failure. `warnFd` gets a warning when a detail is lost.
int createEventObject(image::schema::FileDescriptor::Reader f, int warnFd);

// Registers the saved targets of every epoll of `fds`, once every fd is at its number:
// epolls watched by other epolls first. A registration whose target cannot be watched
// here (a stand-in: /dev/null for a file at home, or for a terminal or socket that
// could not be reconnected) is skipped with a warning on `warnFd`.
void restoreEpollRegistrations(kj::ArrayPtr<const image::schema::FileDescriptor::Reader> fds,
                               const forward::Config* migrated, int warnFd);

}  // namespace mig::migctl
