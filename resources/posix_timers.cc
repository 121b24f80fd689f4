// See posix_timers.h.
#include "resources/posix_timers.h"

#include "image/image_error.h"
#include "resources/proc_file.h"

#include <csignal>
#include <ctime>
#include <string>

namespace mig::resources::posix_timers {
namespace {

using image::fail;

// The kernel's encoding of CPU clocks (include/linux/posix-timers.h): negative,
// ~pid << 3 | (per-thread ? 4 : 0) | which; pid 0 is the caller.
constexpr int32_t kCpuClockPerThread = 4;

using fdinfo::literal;
using fdinfo::number;

// "ID: 3"
bool parseId(std::string_view s, ProcTimer& t) { return literal(s, "ID: ") && number(s, 10, t.id) && s.empty(); }

// "signal: 35/0000000000001234" (signal and sival_ptr in hex)
bool parseSignal(std::string_view s, ProcTimer& t) {
  return literal(s, "signal: ") && number(s, 10, t.signo) && literal(s, "/") && number(s, 16, t.value) && s.empty();
}

// "notify: signal/pid.4242", "notify: signal/tid.4243", "notify: none/pid.4242"
bool parseNotify(std::string_view s, ProcTimer& t) {
  if (!literal(s, "notify: ")) return false;
  if (literal(s, "signal/")) t.notify = SIGEV_SIGNAL;
  else if (literal(s, "none/")) t.notify = SIGEV_NONE;
  else if (literal(s, "thread/")) t.notify = SIGEV_THREAD;
  else return false;
  if (literal(s, "tid.")) t.notify |= SIGEV_THREAD_ID;
  else if (!literal(s, "pid.")) return false;
  return number(s, 10, t.target) && s.empty();
}

bool parseClock(std::string_view s, ProcTimer& t) { return literal(s, "ClockID: ") && number(s, 10, t.clock) && s.empty(); }

}  // namespace

const char* parse(std::string_view text, std::vector<ProcTimer>& out) {
  // Four lines per timer, in this order (fs/proc/base.c, show_timer).
  bool (*const lines[])(std::string_view, ProcTimer&) = {parseId, parseSignal, parseNotify, parseClock};
  size_t n = 0;
  ProcTimer t;
  const bool expected = forEachLine(text, [&](std::string_view line) {
    if (!lines[n % 4](line, t)) return false;
    if (++n % 4 == 0) {
      out.push_back(t);
      t = ProcTimer{};
    }
    return true;
  });
  if (!expected) return "a line of /proc/PID/timers is not as expected";
  return n % 4 == 0 ? nullptr : "/proc/PID/timers ends in the middle of a timer";
}

const char* unsupportedClock(int32_t clock) {
  switch (clock) {
    case CLOCK_REALTIME:
    case CLOCK_MONOTONIC:
    case CLOCK_PROCESS_CPUTIME_ID:
    case CLOCK_BOOTTIME:
    case CLOCK_REALTIME_ALARM:
    case CLOCK_BOOTTIME_ALARM:
    case CLOCK_TAI:
      return nullptr;
    case CLOCK_THREAD_CPUTIME_ID:
      return "a thread's CPU clock";
    default:
      break;
  }
  if (clock < 0) {
    // The process's own CPU clocks (what glibc passes for CLOCK_PROCESS_CPUTIME_ID)
    // are the same after a restore; a thread's, or another process's, are not.
    if (~(clock >> 3) != 0) return "another process's or thread's CPU clock";
    if (clock & kCpuClockPerThread) return "a thread's CPU clock";
    return nullptr;
  }
  return "a clock mig does not know";
}

void capture(pid_t pid, const control::Block& block, image::schema::Process::Builder p) {
  if (!block.timersComplete && block.timerCount == control::kMaxTimers) {
    fail(kj::str("process ", pid, " has more than ", control::kMaxTimers, " POSIX timers; mig saves at most that many"));
  }
  std::vector<ProcTimer> listed;
  std::string text;  // none without the file: a kernel without CONFIG_CHECKPOINT_RESTORE
  readProcFileIfExists(pid, "timers", text);
  if (const char* why = parse(text, listed)) fail(kj::str("process ", pid, ": ", why));
  auto out = p.initPosixTimers(static_cast<uint32_t>(listed.size()));
  for (size_t i = 0; i < listed.size(); ++i) {
    const ProcTimer& t = listed[i];
    const control::TimerSlot* slot = nullptr;
    for (uint32_t k = 0; k < block.timerCount && k < control::kMaxTimers; ++k) {
      if (block.timers[k].id == t.id) slot = &block.timers[k];
    }
    if (slot == nullptr) fail(kj::str("POSIX timer ", t.id, " of process ", pid, " was not seen by libmig at the freeze"));
    if (const char* why = unsupportedClock(t.clock)) {
      fail(kj::str("POSIX timer ", t.id, " of process ", pid, " runs on ", why, " (clock ", t.clock,
                   "), which mig cannot bring back; mig saves timers on the realtime, monotonic, boottime, "
                   "TAI and process CPU clocks"));
    }
    auto o = out[static_cast<uint32_t>(i)];
    o.setId(t.id);
    o.setClock(t.clock);
    o.setNotify(t.notify);
    o.setSigno(t.signo);
    o.setValue(t.value);
    o.setThread((t.notify & SIGEV_THREAD_ID) ? t.target : 0);
    o.initTimer().setValueNs(slot->valueNs);
    o.getTimer().setIntervalNs(slot->intervalNs);
    o.setOverrun(slot->overrun);
    const bool wallClock = t.clock == CLOCK_REALTIME || t.clock == CLOCK_REALTIME_ALARM;
    if (wallClock && (slot->flags & control::kTimerAbsolute) && slot->valueNs > 0) {
      o.setAbsoluteNs(block.realtimeNs + slot->valueNs);
    }
  }
}

}  // namespace mig::resources::posix_timers
