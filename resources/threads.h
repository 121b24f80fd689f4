// A process's threads in the image: what the shim's checkpoint block holds of each
// parked thread (registers' frame, TLS, robust list, rseq, sigaltstack), its name,
// and the signals pending for it with their siginfo (pending_siginfo.h).
#pragma once

#include "image/writer.h"
#include "resources/process_capture.h"

namespace mig::resources {

void writeThreads(pid_t pid, const control::Block& block, image::ImageWriter& w, CaptureStats& stats);

}  // namespace mig::resources
