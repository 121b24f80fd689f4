// How busy this host is, as *balance* and placement see it (docs/policies.md): the
// threads that are running or waiting for a CPU (state R in /proc/PID/task/TID/stat),
// counted every sample interval and averaged over a window. A count rather than CPU
// time: CPU time says how much a thread got, not how much it wanted, and on a host
// short of CPUs that difference is the point. And /proc/loadavg is the kernel's, which
// simulated hosts (PID namespaces on one machine) share; the count is of the threads
// this shadowd can see. A thread counts once it has existed for minAgeSeconds (one
// sample interval): the commands that run for a moment (a shell's `ls`, a `migctl
// list`) do not make a host busy, a program that keeps computing does.
#pragma once

#include <kj/vector.h>

#include <sys/types.h>

namespace mig::shadow {

class RunnableMeter {
 public:
  RunnableMeter(double windowSeconds, double minAgeSeconds) : window_(windowSeconds), minAge_(minAgeSeconds) {}

  // Counts the runnable threads now (`now`: seconds on a monotonic clock), shadowd's
  // own excepted; drops the samples older than the window.
  void sample(double now);

  // The average count over the window's samples (0 without samples).
  double average() const;
  // The same without the threads of process `pid` (a job: the host's load besides it).
  double averageWithout(pid_t pid) const;
  // The share of the window's samples in which a thread of `pid` was runnable: whether
  // a job wants CPU at all.
  double fractionRunning(pid_t pid) const;
  // From the oldest sample kept to the newest: a window not yet filled says less.
  double coveredSeconds() const;

 private:
  struct Sample {
    double at;
    kj::Vector<pid_t> running;  // the process of each runnable thread
  };
  double window_;
  double minAge_;
  kj::Vector<Sample> samples_;
};

}  // namespace mig::shadow
