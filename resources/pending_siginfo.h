// The siginfo of a parked process's pending signals, read without taking them:
// /proc shows only which signals are pending, while a realtime signal may be queued
// several times with different values, and a handler may look at its sender. ptrace's
// PTRACE_PEEKSIGINFO reads a thread's queue (or the process's shared queue) as it is.
// Also the helpers threads.cc and process_attrs.cc share to put pending signals into
// the image.
#pragma once

#include <kj/array.h>
#include <kj/vector.h>

#include <capnp/list.h>

#include <cstdint>
#include <string>
#include <sys/types.h>

namespace mig::resources {

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

// A "SigPnd:"/"ShdPnd:" mask of /proc/PID/status, without the shim's checkpoint signal
// (never re-raised).
uint64_t pendingMask(const std::string& status, const char* field);

// Bit n-1 of `mask` set: n goes into `out`, in order.
void addSignals(uint64_t mask, capnp::List<uint32_t>::Builder out);

// The siginfo of each queued pending signal into the list init(n) makes, when the
// queue can be read; only worth asking when /proc says something is pending.
template <typename InitList>
inline void addSiginfo(PendingSiginfoReader& reader, pid_t tid, bool shared, InitList init) {
  kj::Vector<QueuedSignal> queued;
  if (!reader.read(tid, shared, queued)) return;
  auto list = init(static_cast<uint32_t>(queued.size()));
  for (size_t i = 0; i < queued.size(); ++i) list.set(i, kj::arrayPtr(queued[i].info, sizeof(queued[i].info)));
}

}  // namespace mig::resources
