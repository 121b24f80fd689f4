// Where a hop's freeze goes (issue 14): the sender (`migctl send`, send_command.cc)
// and the destination's restart (`migctl restart`, restart_command.cc) mark the
// moments of their part of a hop and, when $MIG_HOP_TIMES names a file, append one
// line per hop to it. bench/precopy_bench.sh and bench/lazy_restart_bench.sh print
// those lines as the freeze's breakdown. Marks are realtime microseconds, so that
// lines of the two sides (one host, or simulated hosts sharing a clock) line up.
// Off (one getenv at construction, nothing written) when the variable is unset.
#pragma once

#include <kj/string.h>
#include <kj/vector.h>

#include <cstdint>

namespace mig::shadow {

struct HopMark {
  const char* phase;  // the part that ended at `us` (a string literal)
  uint64_t us;        // CLOCK_REALTIME, microseconds
};

// "WHO at T0: PHASE1 1.234 ms, PHASE2 ..., total N ms": each phase the time since the
// mark before it, the first mark being the start (its phase name is not printed).
kj::String formatHopTimes(kj::StringPtr who, kj::ArrayPtr<const HopMark> marks);

class HopTimes {
 public:
  // who: the line's first word(s), e.g. "send pre-copy".
  explicit HopTimes(kj::StringPtr who);
  bool on() const { return path_ != nullptr; }
  void mark(const char* phase);
  void setWho(kj::StringPtr who) { who_ = kj::str(who); }
  // Appends the line to $MIG_HOP_TIMES (one O_APPEND write); a failure is ignored:
  // timing is never a reason for a hop to fail.
  void write() const;

 private:
  const char* path_;
  kj::String who_;
  kj::Vector<HopMark> marks_;
};

}  // namespace mig::shadow
