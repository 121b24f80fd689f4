// Writes the image of a process whose threads are parked by the shim: its
// process-wide state (process_attrs.cc), threads (threads.cc), fds (fd_capture.cc)
// and memory (memory.cc), from the shim's checkpoint block, a PageSource and
// /proc/PID.
#pragma once

#include "image/byte_io.h"
#include "resources/fd_kind.h"
#include "resources/page_source.h"
#include "shim/control_protocol.h"

#include <sys/types.h>

namespace mig::resources {

struct CaptureStats {
  uint64_t imageBytes;
  uint64_t savedPages;
  uint32_t threads;
  uint32_t fds;
  uint64_t pendingSignals;  // bit (n-1): signal n was pending (for a thread or the process)
                            // and went into the image
};

CaptureStats captureProcess(pid_t pid, const control::Block& block, PageSource& memory, image::ByteSink& out,
                            const CaptureOptions& options = {});

}  // namespace mig::resources
