// Signals at the deputy: those sent to the job's PID at home (kill, sigqueue, Ctrl-C
// and Ctrl-Z on its terminal, SIGCHLD from the children it forked at home) go on to the
// job where it runs, with their siginfo and in order, through the home shadowd; a TSTP,
// TTIN or TTOU stops the deputy too once the job has it, by that signal (a SIGSTOP, which it cannot
// catch, shadowd notices: local_service.cc followStops). Those pending at the freeze
// went with the job's image and are dropped here.
#pragma once

#include "shadow/mig.capnp.h"

#include <kj/async-unix.h>
#include <kj/async.h>

#include <csignal>
#include <cstdint>
#include <deque>

namespace mig::deputy {

class StandIn;

// The stop-watch thread's name (/proc/PID/task/TID/comm), by which shadowd finds it.
constexpr const char* kStopWatchThread = "mig-stopwatch";

// The signals the deputy (and its group stand-in, stand_in.h) catch and pass on.
bool passedOn(int sig);

// How many SIGCONTs the deputy has taken: a worker waiting for its terminal's
// foreground (call_runner.cc) sends SIGTTIN again after each, as the kernel does.
uint32_t continuedCount();

// Whether the deputy's process group is orphaned (no member has a parent in another
// group of its session), read from /proc: the kernel then drops TSTP, TTIN and TTOU at
// their default action and fails a background read of the terminal with EIO.
bool groupOrphaned();

// Before the event loop exists: blocks every signal, drops the pending ones in
// `dropMask` (bit n-1: signal n), and gives kj the signals to catch (and one for itself
// that is not the job's).
void takeSignals(uint64_t dropMask);

// Starts the deputy's stop-watch thread (named kStopWatchThread): it blocks every
// signal and sleeps, so it never takes one, but like every thread it stops when the
// process is stopped. Its home shadowd traces it alone (shadow/stop_watch.h) and so
// hears of a SIGSTOP at once, which nothing but the deputy's parent hears of otherwise;
// the deputy's own threads, and the signals they take, are not traced. Before the
// deputy registers, so shadowd finds it.
void startStopWatchThread();

// Forwards every caught signal to the job with its siginfo, one at a time and in the
// order caught, for as long as the process lives; stops the deputy once the job has a
// TSTP, TTIN or TTOU.
class SignalForwarder {
 public:
  SignalForwarder(kj::UnixEventPort& port, kj::TaskSet& tasks, rpc::Local::Client local, uint64_t jobId,
                  kj::ArrayPtr<const kj::byte> token);

  // From now on a signal its group stand-in caught too goes to the job's group where
  // it runs (stand_in.h).
  void tellGroupsBy(StandIn& standIn) { standIn_ = standIn; }

  // The home shadowd restarted and the deputy registered with it again: the signals
  // held meanwhile (those a closed connection could not take) go on through `local`.
  void reconnected(rpc::Local::Client local);

 private:
  kj::Promise<void> watch(int sig);
  void sendNext();
  void send(const siginfo_t& info, bool toGroup);

  kj::UnixEventPort& port_;
  kj::TaskSet& tasks_;
  rpc::Local::Client local_;
  kj::Maybe<StandIn&> standIn_;
  uint64_t jobId_;
  kj::ArrayPtr<const kj::byte> token_;
  std::deque<siginfo_t> queue_;  // caught, not yet sent
  bool sending_ = false;
  bool waitingForShadowd_ = false;  // the connection closed: held until reconnected()
};

}  // namespace mig::deputy
