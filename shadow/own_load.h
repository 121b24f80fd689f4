// The load of a host's own processes, as the *owner returns* policy sees it: the CPU
// time used by every process this shadowd can see that is neither shadowd nor one of
// its descendants (the jobs that migrated in, the senders and restorers it runs).
#pragma once

#include <kj/map.h>

#include <sys/types.h>

namespace mig::shadow {

class OwnLoadMeter {
 public:
  // CPUs the own processes used on average since the previous call (`now`: seconds on
  // a monotonic clock), or nothing at the first call (there is no interval yet).
  // Reads /proc/PID/stat of every process: a few ms on a host with thousands.
  kj::Maybe<double> sample(double now);

 private:
  struct Seen {
    unsigned long long start;  // starttime, so that a reused PID is a new process
    unsigned long long ticks;  // utime + stime, all its threads
  };
  kj::HashMap<pid_t, Seen> seen_;
  double last_ = -1;
};

}  // namespace mig::shadow
