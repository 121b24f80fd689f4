// Puts the saved file descriptors of an image back at their numbers, in this
// process (migctl restart), before it execs the restorer: regular files reopened at
// their offsets after a consistency check, deleted files recreated and deleted
// again, pipes recreated with their buffered bytes, dup()ed fds sharing one open
// file, and terminals/pipes of the original reconnected to our own fds 0-2.
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
void restoreFiles(image::FileReader& image, int* keep, size_t keepCount);

// For a job that migrated here: its saved fds are its home fds, held at home by its
// deputy. Each number gets a stand-in (/dev/null) and is
// marked forwarded (and stream, for pipes, terminals and sockets) in `config`.
void placeStandIns(image::FileReader& image, int* keep, size_t keepCount, forward::Config& config);

}  // namespace mig::migctl
