// Puts the saved file descriptors of an image back at their numbers, in this
// process (migctl restart), before it execs the restorer: regular files reopened at
// their offsets after a consistency check, deleted files recreated and deleted
// again, pipes recreated with their buffered bytes, event-loop objects (eventfd,
// timerfd, signalfd, epoll: restart_events.h) recreated with their state, dup()ed
// fds sharing one open file, and terminals/pipes of the original reconnected to our
// own fds 0-2.
#pragma once

#include "image/file_reader.h"
#include "shim/forward/forward_config.h"

namespace mig::migctl {

struct FileRestoreOptions {
  bool force = false;  // restore against files that changed since the checkpoint
};

// Refuses (throws, naming the file) when a regular file the process had open is
// missing or changed since the checkpoint, unless options.force.
void checkSavedFiles(image::FileReader& image, const FileRestoreOptions& options);

// `keep` are fds of ours that must survive (the image and the plan); they are moved
// above every saved fd number first, and their new numbers are written back.
// With `migrated` (a job that migrated here) the saved fds are its home fds, held at
// home by its deputy: each number gets a stand-in (/dev/null) and is marked forwarded
// (and stream, for terminals, pipes and sockets to other processes) in *migrated;
// pipes whose both ends the job holds and event-loop objects are recreated here as
// they were.
void restoreFiles(image::FileReader& image, int* keep, size_t keepCount, forward::Config* migrated = nullptr);

}  // namespace mig::migctl
