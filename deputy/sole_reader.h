// Whether the deputy is the only process at home that may read a stream of the job's
// (reads pushed ahead, pushed_reads.h). Bytes pushed to the job's host stay in the
// kernel at home until the job has read them there; a second reader at home (the
// members of a process tree that moved whole each read through a deputy of their own;
// a child of the job's that stayed home; a program the pipe was inherited by) would be
// given them too. So a stream is pushed only when no other process holds it for
// reading when its pushing starts.
//
// That is enough, not only at the start: an anonymous pipe or a socket reaches a
// process only from one that holds it (fork, SCM_RIGHTS), and the only holder is the
// deputy, which never passes the job's fds on (a job away sends no ancillary data
// home, shim/forward/socket_calls.cc) and forks only its group stand-in, which closes
// them. Processes born away from home read through this deputy and its link process,
// whose buffer gives each byte to one read. A named FIFO is never pushed: anyone may
// open it by its path at any moment. Not seen: a process that opens the deputy's fd
// through /proc/PID/fd (or pidfd_getfd) while the stream is pushed, and another user's
// process (none of its user ids the deputy's) that was sent the fd before.
#pragma once

#include <sys/types.h>

namespace mig::deputy {

// 0 when this process may be the only reader at home of the anonymous pipe or socket
// `fd` (the holders of a pipe's write end do not read); else the PID of a process that
// may read it too, or -1: `fd` is no anonymous pipe or socket, or /proc cannot say.
// Looks at every process's fds in /proc, so it is done once a stream.
pid_t otherReader(int fd);

}  // namespace mig::deputy
