// The group stand-in (issue 12): a small process at home, in the deputy's process group
// and session, that holds the place there of the processes the job forked where it runs
// (born away: they have no process at home). A group signal sent at home (a shell's
// `kill -TERM -PGID`, Ctrl-C on the terminal, another member's kill(-PGID)) reaches the
// deputy, which passes it on to the job alone, since it cannot tell it from one sent to
// its PID; it reaches the stand-in too, whose PID nobody knows as a job's, so whatever it
// catches was sent to its group. It passes it on to the deputy, which sends it to the
// job's host for the processes in the job's group there but the job (Node.signal with
// `bornAway`).
//
// The stand-in is forked twice (nobody's child in the job: a wait for any child at home
// never sees it), closes every fd but its socket to the deputy, and catches every
// signal that can be caught but mig's own (62, 63). It drops those its deputy sent: a
// kill(-PGID) by the job itself reaches its children born away where it runs, from the
// job's shim (sigsys_handler.cc killHomeGroup). SIGSTOP and SIGKILL it cannot catch: a
// SIGSTOP stops it and the members, not the processes born away; a SIGKILL of the group
// kills it and the deputy at once, and the home shadowd, seeing the deputy gone, looks
// at the stand-in (registered with the deputy, Local.registerDeputy `standIn`): killed
// too, so the group was, and the job's host kills the processes born away too
// (local_service.cc watchDeputy). The deputy tells it to end when the job ends or comes
// home; if the deputy dies without telling it (killed alone), it waits 5 s before it
// ends, so that shadowd sees it alive and leaves the processes born away alone.
#pragma once

#include <kj/async-io.h>
#include <kj/function.h>

#include <csignal>
#include <sys/types.h>

namespace mig::deputy {

class StandIn {
 public:
  // Starts the stand-in in the deputy's group (every signal blocked, as the deputy's are
  // from takeSignals on). Throws if it cannot be started.
  StandIn(kj::LowLevelAsyncIoProvider& io, kj::TaskSet& tasks);
  ~StandIn();

  pid_t pid() const { return pid_; }

  // From now on each signal it catches goes to `passOn`: one sent to the group, for the
  // job's processes born away.
  void passOnTo(kj::Function<void(const siginfo_t&)> passOn);

  // The job ended, or comes home: the stand-in ends now (not as a killed one would).
  void end();

 private:
  kj::Promise<void> readNext();

  pid_t pid_ = 0;
  int fd_ = -1;  // the deputy's end of its socket, among the deputy's own fds
  kj::Own<kj::AsyncIoStream> stream_;
  kj::TaskSet& tasks_;
  kj::Function<void(const siginfo_t&)> passOn_;
  siginfo_t next_;
};

}  // namespace mig::deputy
