// The fds migctl inherited from its caller, as they were when main() started. Only
// these may stand in for a saved home stream at a restart (home_stream.cc): an fd
// migctl opened itself (the image, the plan, a log...) must never reach the restored
// process in place of its own terminal, socket or pipe.
#pragma once

#include <kj/array.h>
#include <kj/vector.h>

#include <sys/stat.h>
#include <sys/types.h>

namespace mig::resources {

// One inherited fd and the file it was open on.
struct CallerFd {
  int fd;
  dev_t dev;
  ino_t ino;
};

class CallerFds {
 public:
  CallerFds() = default;
  explicit CallerFds(kj::Vector<CallerFd> fds) : fds_(kj::mv(fds)) {}

  // Every fd open in this process now (/proc/self/fd; 0, 1 and 2 where /proc is
  // missing). Call it first thing in main(), before anything is opened.
  static CallerFds atStartup();

  // Whether `fd`, which is now open on `now` (null: not open), is still the fd the
  // caller gave us: it was open at startup, on the same file.
  bool inherited(int fd, const struct stat* now) const;

  // The same, asking the kernel what `fd` is now.
  bool inherited(int fd) const;

  kj::ArrayPtr<const CallerFd> all() const { return fds_; }

 private:
  kj::Vector<CallerFd> fds_;
};

}  // namespace mig::resources
