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
// kChildLockForgetAll (the owner ends: all of them go; fd -1), kChildClose (the owner
// closes a home fd the deputy opened for it: see below); owner: the child's PID.
// Returns 0 or -1 with errno, like fcntl.
//
// kChildClose: the deputy's process holds the job's record locks, and the kernel drops
// them at the close of any of that process's fds of the file (the owner of a record
// lock is an fd table). So a child's own fd of a file the job holds record locks on is
// not closed but kept aside, and closed once the job holds none there any more (looked
// at on every later call of this row). An fd of any other file is closed at once. The
// child's own locks on the file go with kChildLockForget, which the shim sends first;
// the job's own close (also that of a program it exec'd after the move) goes as a
// close, and drops the job's locks as the kernel's does.
#pragma once

#include <fcntl.h>

namespace mig::rsc {

inline constexpr int kChildLockForget = -1;
inline constexpr int kChildLockForgetAll = -2;
inline constexpr int kChildClose = -3;

// Where the deputy keeps the keeper's socket (deputy/own_fds.h placeOwn): set before any
// call runs. Returns the fd's new number, or -1 (the fd is closed then).
void setChildLockFdPlacer(int (*place)(int fd));

}  // namespace mig::rsc

extern "C" int mig_child_lock(int fd, int cmd, struct flock* lock, int owner);
