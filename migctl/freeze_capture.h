// The part of a checkpoint and of a migration hop that is the same: freeze the
// process behind a ControlClient and write its image. The process stays frozen; the
// caller then resumes it, ends it, or makes it the deputy.
#pragma once

#include "image/byte_io.h"
#include "image/writer.h"
#include "resources/precopy.h"
#include "resources/process_capture.h"
#include "migctl/control_client.h"

namespace mig::migctl {

// forMigration: the image goes to another host (see resources::ProcPageSource).
// maxDeletedFileBytes: resources::CaptureOptions.
resources::CaptureStats freezeAndCapture(ControlClient& ctl, int timeoutSeconds, bool forMigration,
                                     image::ByteSink& out,
                                     uint64_t maxDeletedFileBytes = resources::CaptureOptions::kDefaultMaxDeletedFileBytes);

// Pre-copy's end (resources/precopy.h): freezes the process, takes the last look at
// what it wrote, and finishes the image `w` that the rounds began.
resources::CaptureStats freezeAndFinish(ControlClient& ctl, int timeoutSeconds, resources::PageSource& memory,
                                        resources::Precopy& precopy, image::ImageWriter& w);

}  // namespace mig::migctl
