// The checkpoint's walk over a parked process's fds: lists /proc/PID/fd (leaving out
// the shim's own), finds dup()s by kcmp, asks the kind list which kind each fd is
// and lets that kind capture it into the image's files section.
#pragma once

#include "image/writer.h"
#include "resources/fd_kind.h"
#include "resources/process_capture.h"

#include <set>
#include <vector>

namespace mig::resources {

// The parked process's fds, sorted by number, the shim's own left out: what writeFiles
// walks. A tree's capture takes them first and finds the pipes between its members
// in them (resources/process_capture.cc), each member's fds looked at once.
// migSockets: migSocketInodes(pid), read already (null: read here).
std::vector<FdProbe> probeFiles(pid_t pid, const control::Block& block,
                                const std::set<uint64_t>* migSockets = nullptr);

// treePipes: see CaptureContext::treePipes. probed: probeFiles(pid, block), taken
// already while the process is parked (null: taken here).
void writeFiles(pid_t pid, const control::Block& block, image::ImageWriter& w, CaptureStats& stats,
                const CaptureOptions& options, const std::set<uint64_t>* treePipes = nullptr,
                const std::vector<FdProbe>* probed = nullptr);

// Inodes of the Unix sockets bound under mig's abstract names (@mig/...) in `pid`'s
// network namespace: the capture never takes them as the program's.
std::set<uint64_t> migSocketInodes(pid_t pid);

}  // namespace mig::resources
