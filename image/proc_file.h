// Reading a file under /proc/PID of the process being captured (stat, status,
// auxv, fdinfo/N, ...) whole; process_capture.cc and event_capture.cc share it.
#pragma once

#include <string>
#include <sys/types.h>

namespace mig::image {

// The contents of /proc/PID/WHAT; throws (one line naming the file) if it cannot
// be opened.
std::string readProcFile(pid_t pid, const std::string& what);

}  // namespace mig::image
