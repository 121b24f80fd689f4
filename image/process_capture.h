// Writes the image of a process whose threads are parked by the shim: memory from
// a PageSource, threads and process-wide state from the shim's checkpoint block,
// and the rest (fds, layout, limits, pending signals) from /proc/PID.
#pragma once

#include "image/byte_io.h"
#include "image/page_source.h"
#include "shim/control_protocol.h"

#include <sys/types.h>

namespace mig::image {

struct CaptureStats {
  uint64_t imageBytes;
  uint64_t savedPages;
  uint32_t threads;
  uint32_t fds;
  uint64_t pendingSignals;  // bit (n-1): signal n was pending (for a thread or the process)
                            // and went into the image
};

CaptureStats captureProcess(pid_t pid, const control::Block& block, PageSource& memory, ByteSink& out);

}  // namespace mig::image
