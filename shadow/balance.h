// The *balance* policy acting (docs/policies.md) and placement (`migctl run
// --anywhere`, Local.place). Both compare hosts by the CPU share a job can expect on
// them, from the runnable threads each counts (shadow/runnable.h, NodeInfo.runnable)
// and the CPUs it has; the rule itself is the pure shouldBalance of policy.h.
#pragma once

#include "shadow/daemon.h"

namespace mig::shadow {

// Counts this host's runnable threads every [balance] sample_seconds (always: the count
// is what Node.info reports) and, when [balance] is enabled, once the host is busy,
// moves at most one job per window to a host where the rule says it gains more than the
// move costs. Logs each move, and each job's reason to stay when that reason changes.
// Runs until shadowd stops.
kj::Promise<void> watchBalance(Daemon& d);

// Local.place: the job `pid`, at home here, goes to the accepting host where it can
// expect the most CPU if that beats what it has here by [balance] min_share_gain;
// else it stays and the reason says why.
kj::Promise<void> localPlace(Daemon& d, capnp::CallContext<rpc::Local::PlaceParams, rpc::Local::PlaceResults> context);

}  // namespace mig::shadow
