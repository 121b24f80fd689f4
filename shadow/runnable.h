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
  // Samples are taken every minAgeSeconds ([balance] sample_seconds).
  RunnableMeter(double windowSeconds, double minAgeSeconds) : window_(windowSeconds), minAge_(minAgeSeconds) {}

  // Counts the runnable threads now (`now`: seconds on a monotonic clock), shadowd's
  // own excepted; drops the samples older than the window.
  void sample(double now);

  // The average count over the window's samples (0 without samples).
  double average() const;
  // The same for a reader (Node.info, placement, metrics), who wants a count that is
  // not stale: when the meter was not sampling (balance off and nobody read it for
  // kInterestSeconds), a sample is taken now, and sampling goes on while reads come.
  double averageForReader(double now);
  // Whether to keep sampling without balance: someone read the count lately.
  bool wanted(double now) const;
  // How long a read keeps the meter sampling without balance: a scan of /proc every
  // sample interval costs a host of thousands of threads some ms each time, not worth
  // paying while nobody looks.
  static constexpr double kInterestSeconds = 120;
  // The clock of `now` above (CLOCK_MONOTONIC, seconds).
  static double clock();
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
  double minAge_;              // also the sample interval
  double lastRead_ = -1e18;
  kj::Vector<Sample> samples_;
};

}  // namespace mig::shadow
