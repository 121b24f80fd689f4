// The arithmetic of an NTP-style clock offset measurement (clock_offset.h), apart so
// the unit tests reach it without a daemon.
#pragma once

#include <kj/common.h>

#include <cstdint>

namespace mig::shadow {

// One exchange: local CLOCK_REALTIME before the request and after the reply, and the
// remote clock the reply carried.
struct ClockSample {
  int64_t sentNs;
  int64_t remoteNs;
  int64_t receivedNs;
  int64_t roundTripNs() const { return receivedNs - sentNs; }
  // Remote minus local, the remote reading taken to be from half-way through.
  int64_t offsetNs() const { return remoteNs - (sentNs + (receivedNs - sentNs) / 2); }
};

// The offset of the sample with the shortest round trip (the least room for the
// reply's delay to differ from the request's); 0 with no samples, and 0 when it is
// within that sample's uncertainty (half its round trip): clocks that cannot be told
// apart (hosts on one machine, or well synchronised) leave the job's clock alone
// rather than shift it by noise, which would cost every clock read a little.
inline int64_t bestOffsetNs(kj::ArrayPtr<const ClockSample> samples) {
  const ClockSample* best = nullptr;
  for (auto& s : samples) {
    if (best == nullptr || s.roundTripNs() < best->roundTripNs()) best = &s;
  }
  if (best == nullptr) return 0;
  const int64_t offset = best->offsetNs(), uncertainty = best->roundTripNs() / 2;
  return offset <= uncertainty && offset >= -uncertainty ? 0 : offset;
}

}  // namespace mig::shadow
