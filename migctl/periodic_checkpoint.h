// `migctl checkpoint PID -o DIR --every SECONDS`: a chain of incremental images in DIR
// (image/image_chain.h), one every SECONDS until the process ends (or COUNT images).
#pragma once

#include <cstdint>
#include <kj/string.h>
#include <sys/types.h>

namespace mig::migctl {

struct PeriodicOptions {
  pid_t pid;
  kj::StringPtr dir;
  double everySeconds;
  long count;  // 0: until the process ends
  int timeoutSeconds;
  uint64_t maxDeletedFileBytes;
  bool only;
};

int periodicCheckpoints(const PeriodicOptions& o);

}  // namespace mig::migctl
