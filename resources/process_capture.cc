// See process_capture.h.
#include "resources/process_capture.h"

#include "image/host_facts.h"
#include "image/image_error.h"
#include "image/writer.h"
#include "resources/fd_capture.h"
#include "resources/memory.h"
#include "resources/process_attrs.h"
#include "resources/proc_file.h"
#include "resources/threads.h"

#include <capnp/message.h>

namespace mig::resources {

CaptureStats captureProcess(pid_t pid, const control::Block& block, PageSource& memory, image::ByteSink& out,
                            const CaptureOptions& options) {
  CaptureStats stats{};
  if (block.magic != control::kMagic || block.version != control::kVersion) {
    image::fail(kj::str("process ", pid, " runs an incompatible libmig (checkpoint block version ", block.version, ")"));
  }
  std::string cmdline = readProcFile(pid, "cmdline");
  capnp::MallocMessageBuilder header;
  image::fillHeader(header.initRoot<image::schema::Header>(), 0, block.vpid, cmdline.c_str());
  image::ImageWriter w(out, header);
  captureProcessInto(pid, block, memory, w, nullptr, stats, options);
  return stats;
}

void captureProcessInto(pid_t pid, const control::Block& block, PageSource& memory, image::ImageWriter& w,
                        const PageRangeSet* held, CaptureStats& stats, const CaptureOptions& options) {
  if (block.magic != control::kMagic || block.version != control::kVersion) {
    image::fail(kj::str("process ", pid, " runs an incompatible libmig (checkpoint block version ", block.version, ")"));
  }
  writeProcess(pid, block, w, stats);
  writeThreads(pid, block, w, stats);
  writeFiles(pid, block, w, stats, options);
  writeMemory(memory, w, stats, held);
  w.finish();
  stats.imageBytes = w.bytesWritten();
}

}  // namespace mig::resources
