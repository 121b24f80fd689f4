// A process's process-wide attributes in the image: mm layout (/proc/PID/stat, auxv),
// signal actions, the real-time itimer, the POSIX timers (posix_timers.cc), umask,
// cwd, resource limits, signals pending for the whole process, and where the restorer hands control back to the shim; and
// the part of them migctl restart sets itself.
#pragma once

#include "image/file_reader.h"
#include "image/writer.h"
#include "resources/process_capture.h"

namespace mig::resources {

void writeProcess(pid_t pid, const control::Block& block, image::ImageWriter& w, CaptureStats& stats);

// At restart, in migctl before it execs the restorer (which inherits them): cwd,
// umask and resource limits but RLIMIT_NOFILE. A migrated job's cwd may be at home
// only ("/" here).
void applyProcessState(image::FileReader& img, bool migrated);

// RLIMIT_NOFILE, once the job's fds are in place (restoreFiles) and just before the
// exec: a lower soft limit (a job's 200) would refuse fd numbers at or above it to the
// placing (F_DUPFD, dup2) that the job itself got before it lowered its limit.
void applyFdLimit(image::FileReader& img);

}  // namespace mig::resources
