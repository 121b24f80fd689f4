// rsc/child_locks.h: the fcntl record locks of processes the job forked away from home
// (docs/kinds/file_lock.md). Such a child's calls run in its deputy's process at home,
// which is the job's: a record lock (owned by a process) taken there would be the job's,
// conflict with none of the job's and outlive the child. So a child's lock is taken at
// home as an OFD lock (owned by an open file description) on a description of the file
// the child owns, held by the *lock keeper*, a small process the deputy starts at the
// first such call: it opens the file anew through /proc/DEPUTY/fd/N, one description per
// child and file as the kernel keeps one set of record locks per process and file, so
// the child's locks conflict with the job's (record locks held by the deputy), with
// other children's and with every other process at home, and nothing the keeper opens
// or closes touches the deputy's own record locks (a process's close of any fd of a
// file drops its record locks on it). The child's close of an fd of the file drops its
// locks there, as the kernel does; its end drops them all.
//
// Row ChildLock (forward_calls.def): mig_child_lock(fd, cmd, lock, owner), run by the
// deputy. fd: the deputy's number of the file; cmd: F_OFD_SETLK or F_OFD_GETLK on
// `lock` (l_pid 0), kChildLockForget (the owner closes fd: its locks on that file go),
// kChildLockForgetAll (the owner ends: all of them go; fd -1); owner: the child's PID.
// Returns 0 or -1 with errno, like fcntl.
#pragma once

#include <fcntl.h>

namespace mig::rsc {

inline constexpr int kChildLockForget = -1;
inline constexpr int kChildLockForgetAll = -2;

// Where the deputy keeps the keeper's socket (deputy/own_fds.h placeOwn): set before any
// call runs. Returns the fd's new number, or -1 (the fd is closed then).
void setChildLockFdPlacer(int (*place)(int fd));

}  // namespace mig::rsc

extern "C" int mig_child_lock(int fd, int cmd, struct flock* lock, int owner);
