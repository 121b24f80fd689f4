// Whether the deputy is the only process at home that may read a stream of the job's
// (reads pushed ahead, pushed_reads.h). Bytes pushed to the job's host stay in the
// kernel at home until the job has read them there; a second reader at home (the
// members of a process tree that moved whole each read through a deputy of their own;
// a child of the job's that stayed home; a program the pipe was inherited by) would be
// given them too. So a stream is pushed only when no other process may read it.
//
// One look at every process's fds in /proc, at the first stream (it costs about one
// readlink per fd on the host), answers for the job's whole time away:
//   - a pipe or socket the deputy held then is shared if another process held it then
//     (a pipe: its read end). One held by the deputy alone stays so: an anonymous pipe
//     or a socket reaches a process only from one that holds it (fork, SCM_RIGHTS), and
//     the deputy never passes the job's fds on (a job away sends no ancillary data
//     home, shim/forward/socket_calls.cc) and forks only its group stand-in, which
//     closes them. One shared then counts as shared after its other readers are gone.
//   - one the deputy made since (the job's accept, socket, pipe, socketpair) is its
//     alone, for the same reason.
//   - a named FIFO never is: anyone may open it by its path at any moment.
// Processes born away from home read through this deputy and its link process, whose
// buffer gives each byte to one read. Not seen: a pipe opened through /proc/PID/fd (by
// the job, or by another process from the deputy's), pidfd_getfd, and another user's
// process (none of its user ids the deputy's) that was sent the fd before the move.
#pragma once

#include <sys/types.h>

#include <string>
#include <unordered_map>

namespace mig::deputy {

class SoleReaders {
 public:
  // 0 when the deputy may be the only reader at home of the anonymous pipe or socket
  // `fd`; else the PID of a process that may read it too, or -1: `fd` is no anonymous
  // pipe or socket, or /proc cannot say.
  pid_t otherReader(int fd);

 private:
  bool look();  // the look at /proc, into others_
  bool looked_ = false;
  // The deputy's pipes and sockets at the look, by their /proc link ("pipe:[INODE]"):
  // another process that may read it then, or 0.
  std::unordered_map<std::string, pid_t> others_;
};

}  // namespace mig::deputy
