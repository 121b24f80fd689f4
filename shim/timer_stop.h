// Stopping a one-shot POSIX timer for the length of a freeze, and arming it again if
// the job goes on in this process (docs/kinds/posix_timer.md). Raw system calls only,
// no allocation: this runs while every other thread is parked, possibly holding
// malloc's lock.
#pragma once

#include "shim/control_protocol.h"

namespace mig::shim {

// Reads timer `id` into s (time left, interval, overrun) and, if it is an armed
// one-shot timer, stops it (kTimerStopped; kTimerExpiredAtStop if it expired between
// the read and the stop). s.id, s.clock and kTimerAbsolute are the caller's.
void readAndStopTimer(int32_t id, control::TimerSlot& s);

// Arms again a timer readAndStopTimer stopped, with the time it had left (an absolute
// wall-clock timer at its date: realtimeNs, the wall clock when it was read, plus that
// time); nothing for the others.
void rearmTimer(const control::TimerSlot& s, int64_t realtimeNs);

}  // namespace mig::shim
