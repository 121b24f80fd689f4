// The process's POSIX timers (timer_create) at a checkpoint: which ones exist, the
// time each has left, its interval and overrun, and whether it was last armed with
// TIMER_ABSTIME (which the kernel does not report, so the timer_settime wrapper
// remembers it). Only the process itself can ask timer_gettime; the rest of a
// timer (clock, signal, target thread) migctl reads from /proc/PID/timers
// (resources/posix_timers.cc). Raw system calls only, no allocation: this runs while
// every other thread is parked, possibly holding malloc's lock.
#pragma once

#include "shim/control_protocol.h"

namespace mig::shim {

// Fills b.timers, b.timerCount, b.timersComplete and b.realtimeNs, and stops every
// armed one-shot timer (a frozen job's timer must not expire where the job no longer
// runs: docs/kinds/posix_timer.md).
void fillPosixTimers(control::Block& b);

// The job goes on in this process after all: arms again what fillPosixTimers stopped.
void rearmPosixTimers(const control::Block& b);

// True if the process has a SIGEV_THREAD timer: glibc runs those from a helper
// thread that blocks every signal, the checkpoint signal too, so it can never park.
bool hasSigevThreadTimer();

}  // namespace mig::shim
