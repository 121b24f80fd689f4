// The checkpoint's walk over a parked process's fds: lists /proc/PID/fd (leaving out
// the shim's own), finds dup()s by kcmp, asks the kind list which kind each fd is
// and lets that kind capture it into the image's files section.
#pragma once

#include "image/writer.h"
#include "resources/process_capture.h"

namespace mig::resources {

void writeFiles(pid_t pid, const control::Block& block, image::ImageWriter& w, CaptureStats& stats,
                const CaptureOptions& options);

}  // namespace mig::resources
