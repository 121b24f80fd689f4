// A migrated job's clocks: CLOCK_REALTIME follows its home host (offset measured by
// the shadowd that restored it, Config::realtimeOffsetNs) and, where no time namespace
// could keep them (no privilege), its monotonic clocks go on from where they were at
// the freeze (Config::monotonicOffsetNs). Readings get the offset added, absolute
// deadlines the application computed on its clocks get it subtracted before they
// reach this host's kernel.
//
// Two ways in: the libc clock functions the shim exports (clock_functions.cc), since
// the vDSO reads clocks without a system call, and the SIGSYS handler for the system
// calls that read a clock or wait until a time (shiftedClockCall). Both cost one
// predictable branch while no offset is set, which is every process that never
// migrated.
#pragma once

#include "shim/forward/clock_arith.h"
#include "shim/forward/forward_config.h"
#include "shim/forward/trapped_call.h"
#include "shim/runtime.h"

#include <atomic>
#include <cstdint>

namespace mig::forward {

struct ClockShift {
  std::atomic<uint32_t> on;  // an offset below is non-zero and forwarding is active
  int64_t realtimeNs;
  int64_t monotonicNs;
};

// In .bss with the rest of the shim: saved with the image, set again at each restore.
extern ClockShift g_clockShift;

// Set while the shim's clock functions call the real ones: a vDSO that falls back to
// the system call must not have the offset added twice by the handler.
extern thread_local uint32_t t_inClockFunction MIG_TLS;

inline bool clockShifted() { return g_clockShift.on.load(std::memory_order_acquire) != 0; }

inline int64_t clockOffsetNs(ClockKind k) {
  switch (k) {
    case ClockKind::kRealtime: return g_clockShift.realtimeNs;
    case ClockKind::kMonotonic: return g_clockShift.monotonicNs;
    default: return 0;
  }
}

// From the Config a restored job activates forwarding with (activation.cc), and off
// for a restart that does not forward.
void setClockShift(const Config& c);
void clearClockShift();

// How far ahead of this host's CLOCK_MONOTONIC the job's is (0 when not shifted):
// the checkpoint records the job's own reading, which the next host continues from.
inline int64_t jobMonotonicShiftNs() { return clockShifted() ? g_clockShift.monotonicNs : 0; }

// The SIGSYS handler's hook: with an offset set, runs the calls that read a clock or
// wait for an absolute time (clock_gettime, gettimeofday, time, clock_nanosleep,
// futex, futex_waitv, futex_wait, mq_timedsend/receive, timerfd_settime,
// timer_settime), converting between the job's time and this host's, puts the result
// in `result` and returns true. Returns false for every other call, or without an
// offset.
bool shiftedClockCall(const TrappedCall& c, const ucontext_t* uc, long& result);

}  // namespace mig::forward
