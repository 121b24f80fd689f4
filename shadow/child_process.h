// Starting shadowd's helper processes (migctl send, migctl restart) from the event
// loop: fork+exec with a clean signal mask, and their exit status through kj.
#pragma once

#include <kj/array.h>
#include <kj/async-unix.h>
#include <kj/string.h>
#include <kj/vector.h>

#include <sys/types.h>

namespace mig::shadow {

struct ChildSpec {
  kj::Vector<kj::String> argv;
  // NAME=VALUE added to the environment: secrets go here, not on the command line
  // (/proc/PID/environ is readable by the owner only, cmdline by everyone).
  kj::Vector<kj::String> env;
  int stdinFd = -1;   // -1: /dev/null
  int stdoutFd = -1;
  int stderrFd = -1;
  int fd3 = -1;       // given to the child as its fd 3 (migctl restart's --gate-fd)
  int fd4 = -1;       // and as its fd 4 (mig-link's control socket, link_process.h)
  // A session (and process group) of its own: a job restored here, so that a group
  // signal from its family here (a born-away shell's `kill 0`) reaches its family,
  // not shadowd and the other jobs in shadowd's group.
  bool ownSession = false;
};

// Starts the child; throws if fork/exec setup fails. The child's exec failure shows
// as exit status 127.
pid_t spawnChild(const ChildSpec& spec);

// Resolves with the wait status of `pid` (a child started with spawnChild).
kj::Promise<int> childExit(kj::UnixEventPort& port, pid_t pid);

kj::String describeStatus(int status);

}  // namespace mig::shadow
