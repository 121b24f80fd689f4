// How far a job's home host's CLOCK_REALTIME is from this host's, measured NTP style
// over the RPC link (Node.clock) when a migrated job arrives, so the job's realtime
// clock can follow home's (migctl restart --realtime-offset-ns, shim/forward/
// clock_shift.h). Also the Node.clock answer itself.
#pragma once

#include "shadow/clock_sample.h"
#include "shadow/daemon.h"

#include <cstdint>

namespace mig::shadow {

// Home's CLOCK_REALTIME minus ours, from a few exchanges with the shadowd at `home`;
// 0 when `home` is this shadowd.
kj::Promise<int64_t> measureHomeClockOffset(Daemon& d, kj::StringPtr home);

// What this shadowd answers to Node.clock: its CLOCK_REALTIME in nanoseconds.
int64_t clockForPeers();

}  // namespace mig::shadow
