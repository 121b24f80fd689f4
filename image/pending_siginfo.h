// The siginfo of a parked process's pending signals, read without taking them:
// /proc shows only which signals are pending, while a realtime signal may be queued
// several times with different values, and a handler may look at its sender. ptrace's
// PTRACE_PEEKSIGINFO reads a thread's queue (or the process's shared queue) as it is.
#pragma once

#include <kj/array.h>
#include <kj/vector.h>

#include <cstdint>
#include <sys/types.h>

namespace mig::image {

struct QueuedSignal {
  uint8_t info[128];  // siginfo_t
};

class PendingSiginfoReader {
 public:
  // realPid: the process as the kernel knows it; vpid: the PID it believes it has,
  // written into the siginfo of signals it sent itself.
  PendingSiginfoReader(pid_t realPid, pid_t vpid) : realPid_(realPid), vpid_(vpid) {}

  // The queue of thread `tid` (its own, or the process's shared one), oldest first.
  // false when the thread cannot be traced (another tracer, no permission): the
  // caller then keeps only the /proc mask.
  bool read(pid_t tid, bool shared, kj::Vector<QueuedSignal>& out);

 private:
  pid_t realPid_;
  pid_t vpid_;
};

}  // namespace mig::image
