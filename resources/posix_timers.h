// POSIX timers (timer_create) in the image: each timer's id, clock, notification
// (signal and value, target thread) from /proc/PID/timers, joined with what the shim
// asked timer_gettime inside the process at the freeze (control::Block::timers). The
// restorer recreates them with the same ids (restore/restorer.cc, createTimers).
// Page: docs/kinds/posix_timer.md.
#pragma once

#include "image/image.capnp.h"
#include "shim/control_protocol.h"

#include <cstdint>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace mig::resources::posix_timers {

// One timer as /proc/PID/timers lists it.
struct ProcTimer {
  int32_t id = -1;
  int32_t signo = 0;
  uint64_t value = 0;   // sigev_value
  int32_t notify = 0;   // sigev_notify (SIGEV_THREAD_ID included)
  int32_t target = 0;   // the PID or TID it names
  int32_t clock = 0;
};

// Parses the text of /proc/PID/timers; nullptr, or what it could not read.
const char* parse(std::string_view text, std::vector<ProcTimer>& out);

// Why a timer on `clock` cannot be saved, or nullptr if it can.
const char* unsupportedClock(int32_t clock);

// Writes the process's timers into p.posixTimers; refuses (image::fail, one line)
// a timer mig cannot bring back.
void capture(pid_t pid, const control::Block& block, image::schema::Process::Builder p);

}  // namespace mig::resources::posix_timers
