// The group stand-in (issue 12): a small process at home, in the deputy's process group
// and session, that tells the deputy which of the signals it catches were sent to its
// group. A process the job forked where it runs (born away) has no process at home, so a
// group signal sent at home (a shell's `kill -TERM -PGID`, Ctrl-C on the terminal,
// another member's kill(-PGID)) reaches only the deputies, and a deputy alone cannot
// tell it from one sent to its PID. The stand-in's PID nobody knows as a job's, so a
// signal it caught was sent to its group: the deputy, having caught one, asks its
// stand-in for what it caught since (the kernel gives a group signal to every process
// in the group before kill(2) returns), and sends a signal the stand-in caught too to
// the job's whole group where it runs (Node.signal `toGroup`: one kill(-PGID) there,
// the job and its children born there at once, as the kernel gives it), any other to
// the job alone.
//
// The stand-in is forked twice (nobody's child in the job: a wait for any child at home
// never sees it), closes every fd but its socket to the deputy, and leaves every signal
// blocked but for a signalfd of every one that can be caught but mig's own (62, 63). It
// drops those its deputy sent, as the deputy drops them itself: a kill(-PGID) by the job
// reaches its children born away from the job's shim (sigsys_handler.cc killHomeGroup).
// SIGSTOP and SIGKILL it cannot catch, but shadowd looks at it: a SIGSTOP of the group
// stops it with the deputy, and shadowd, told of the deputy's stop (stop_watch.h), finds
// it stopped too (or the SIGSTOP pending) and stops the job's group where it runs, the
// processes born away with the job (local_service.cc deputyFound); the group's SIGCONT
// continues it, and it catches that as any other. A SIGKILL of the group kills it and
// the deputy at once, and the home shadowd, seeing the deputy gone, looks at the
// stand-in (Local.registerDeputy `standIn`): killed too, so the group was, and the
// job's host kills the job's group there (local_service.cc watchDeputy). The deputy tells it to end when the job ends or
// comes home; if the deputy dies without telling it (killed alone), it waits 5 s before
// it ends, so that shadowd sees it alive and leaves the processes born away alone.
#pragma once

#include <kj/async-io.h>
#include <kj/timer.h>

#include <csignal>
#include <deque>
#include <sys/types.h>

namespace mig::deputy {

class StandIn {
 public:
  // Starts the stand-in in the deputy's group (every signal blocked, as the deputy's are
  // from takeSignals on). Throws if it cannot be started.
  StandIn(kj::LowLevelAsyncIoProvider& io, kj::Timer& timer);
  ~StandIn();

  pid_t pid() const { return pid_; }

  // Whether `info`, a signal the deputy caught, was sent to its group: the stand-in
  // caught it too. One call at a time. False once the stand-in is gone, or once it
  // did not answer within kAnswerMs (stopped by a SIGSTOP of the group, for one):
  // from then on every signal goes to the job alone, as without a stand-in.
  kj::Promise<bool> sentToGroup(const siginfo_t& info);

  // The job ended, or comes home: the stand-in ends now (not as a killed one would).
  void end();

 private:
  bool takeMatch(const siginfo_t& info);
  kj::Promise<void> readUntilEnd();

  kj::Timer& timer_;
  pid_t pid_ = 0;
  int fd_ = -1;  // the deputy's end of its socket, among the deputy's own fds
  kj::Own<kj::AsyncIoStream> stream_;
  bool gone_ = false;
  std::deque<siginfo_t> caught_;  // told by the stand-in, not yet matched
  siginfo_t next_;
};

}  // namespace mig::deputy
