// Capture of the event-loop kernel objects of a parked process (eventfd, timerfd,
// signalfd, epoll) into the image's FileDescriptor records, from /proc/PID/fdinfo.
// Used by process_capture.cc for fds whose link reads anon_inode:[eventfd] etc.
#pragma once

#include "image/image.capnp.h"

#include <string>
#include <sys/types.h>
#include <vector>

namespace mig::image {

// The FileDescriptor kind of an fd whose /proc/PID/fd link reads `target`, when it is
// one of the event-loop objects; false otherwise.
bool eventKindOf(const std::string& target, schema::FileDescriptor::Kind& kind);

// Fills the state of `out` (whose fd and kind are set) from the process's fdinfo.
// `processFds` are the fd numbers that go into the image (sorted): an epoll
// registration must name one of them, holding the very file it watches, or the
// checkpoint is refused (throws, naming the fds).
void captureEventObject(pid_t pid, const std::vector<int>& processFds, schema::FileDescriptor::Builder out);

}  // namespace mig::image
