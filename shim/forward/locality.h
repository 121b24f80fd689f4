// Where a path names something: at home (the call goes there) or on this host. The
// policy: host-local are the directories in Config::localPaths (e.g. a file system
// every host mounts, or scratch space) and the kernel's per-host views /proc, /sys
// and /dev; everything else is home. Relative paths follow their directory fd, or the
// working directory, which is at home unless the process moved it to a local path.
// The names of the process's own fds (/dev/fd/N, /dev/stdout, /proc/self/fd/N) follow
// fd N, since a local open of a stand-in would not reach the home file.
#pragma once

#include <cstdint>

namespace mig::forward {

struct State;

// Is `path`, resolved against directory fd `dirfd` (or AT_FDCWD), at home? A null
// path counts as home (the call fails there as it would here).
bool pathIsHome(const State& s, int64_t dirfd, const char* path);

}  // namespace mig::forward
