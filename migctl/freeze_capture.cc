// See freeze_capture.h.
#include "migctl/freeze_capture.h"

#include "image/image_error.h"
#include "resources/page_source.h"

namespace mig::migctl {

resources::CaptureStats freezeAndCapture(ControlClient& ctl, int timeoutSeconds, bool forMigration,
                                     image::ByteSink& out, uint64_t maxDeletedFileBytes) {
  control::Reply reply = ctl.freeze(timeoutSeconds);
  // Through /proc, the process's memory as the kernel sees it (works on any
  // mapping, also unreadable ones).
  resources::ProcPageSource memory(ctl.realPid(), forMigration);
  if (reply.blockSize != sizeof(control::Block)) {
    image::fail(kj::str("process ", ctl.pid(), " runs an incompatible libmig (block size ", reply.blockSize, ")"));
  }
  auto block = kj::heap<control::Block>();
  memory.read(reply.blockAddr, block.get(), sizeof(control::Block));
  resources::CaptureOptions options;
  options.forMigration = forMigration;
  options.maxDeletedFileBytes = maxDeletedFileBytes;
  return resources::captureProcess(ctl.realPid(), *block, memory, out, options);
}

resources::CaptureStats freezeAndFinish(ControlClient& ctl, int timeoutSeconds, resources::PageSource& memory,
                                        resources::Precopy& precopy, image::ImageWriter& w) {
  control::Reply reply = ctl.freeze(timeoutSeconds);
  if (reply.blockSize != sizeof(control::Block)) {
    image::fail(kj::str("process ", ctl.pid(), " runs an incompatible libmig (block size ", reply.blockSize, ")"));
  }
  auto block = kj::heap<control::Block>();
  memory.read(reply.blockAddr, block.get(), sizeof(control::Block));
  precopy.finalScan();
  resources::CaptureStats stats{};
  resources::CaptureOptions options;
  options.forMigration = true;  // pre-copy is a migration's
  resources::captureProcessInto(ctl.realPid(), *block, memory, w, &precopy.held(), stats, options);
  return stats;
}

}  // namespace mig::migctl
