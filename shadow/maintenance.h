// A host going down for maintenance (`systemctl stop shadowd`, SIGTERM): before shadowd
// exits, the jobs that migrated in (its guests) leave, home or to another host that
// takes them, as by `migctl drain` (shadow/drain.h), within --stop-time-limit; the
// guests it could not move are logged, one line each and a summary.
#pragma once

#include "shadow/daemon.h"

namespace mig::shadow {

// Refuses new jobs and moves the guests off; resolves once each has moved or could
// not (no move started after config().stopTimeLimitMs; one under way ends within the
// transfer timeout). At once when there are none.
kj::Promise<void> sendGuestsAway(Daemon& d);

}  // namespace mig::shadow
