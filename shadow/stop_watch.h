// Hearing at once that a job's deputy was stopped. A SIGSTOP sent to the job's PID at
// home stops the deputy, which cannot catch it, and the kernel tells only the deputy's
// parent (and a tracer). So shadowd traces one thread of the deputy, its stop-watch
// thread (deputy/signals.h), from a helper process of its own: that thread blocks every
// signal and sleeps, so tracing it costs nothing and changes nothing for the deputy's
// other threads or the signals they take, but it stops with the process (a group stop),
// which the tracer is told of. The helper lets the stop stand (PTRACE_LISTEN: the
// deputy's parent still sees it with waitpid(WUNTRACED), SIGCONT still continues it) and
// writes one byte to shadowd: 'S' stopped, 'C' continued. Its first word says whether
// it traces the thread: 'A', or 'F' and the errno of PTRACE_SEIZE (then it ends; another
// tracer, a debugger, or no permission). It ends when the thread does
// (the deputy ended, or exec'd into the job coming home), and with shadowd
// (PR_SET_PDEATHSIG), which detaches it.
//
// Not a thread of shadowd: kj's child reaper (waitpid(-1)) would take the tracee's
// reports, which every thread of a process may wait for.
#pragma once

#include <kj/async-io.h>
#include <kj/string.h>

#include <sys/types.h>

namespace mig::shadow {

// The si_value (SI_QUEUE) of a signal home's shadowd sends the deputy to follow a stop or
// continue of the job where it runs (rpc::JobStops): the deputy acts on it and does not
// pass it on to the job, which has it already (deputy/signals.cc).
constexpr int kFollowedStopValue = 0x6d696753;

struct StopWatch {
  pid_t helper;                            // reaped by the caller (childExit)
  kj::Own<kj::AsyncInputStream> reports;   // 'S' and 'C' bytes, then EOF
};

// Starts watching deputy `deputyPid` (without waiting for the helper: its first word
// comes on `reports`). Null, with `why` set, if the deputy has no stop-watch thread (an
// older deputy) or no helper could be started: then poll its state instead.
kj::Maybe<StopWatch> startStopWatch(kj::LowLevelAsyncIoProvider& io, pid_t deputyPid, kj::String& why);

// What a failed first word ('F', errno) says.
kj::String stopWatchRefused(pid_t deputyPid, int error);

// Whether deputy `deputyPid`'s stop-watch thread is traced by a helper of this process
// already (a deputy is watched once, whatever number of hops it serves).
bool stopWatchRunning(pid_t deputyPid);

}  // namespace mig::shadow
