// The *balance* policy acting (docs/policies.md) and placement (`migctl run
// --anywhere`, Local.place). Both compare hosts by the CPU share a job can expect on
// them, from the runnable threads each counts (shadow/runnable.h, NodeInfo.runnable)
// and the CPUs it has; the rule itself is the pure shouldBalance of policy.h. Before
// either sends a job, its destination promises it a slot (Node.claimSlot, decideClaim
// of policy.h), so that hosts deciding at once do not all send jobs to the same idle
// one. The cost of a move uses the transfer rates learned from every image this
// shadowd sends (learnTransferRate).
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

// Node.claimSlot: whether this host promises a slot to a job another host's policy
// would send here; granted: a SlotClaim capability that holds it.
kj::Promise<void> nodeClaimSlot(Daemon& d,
                                capnp::CallContext<rpc::Node::ClaimSlotParams, rpc::Node::ClaimSlotResults> context);

// One image sent to `to` (an address; Daemon::runSender, for every move): `bytes` in
// `seconds`. Kept in Daemon::transferRates and logged with the rate it makes.
void learnTransferRate(Daemon& d, kj::StringPtr to, double bytes, double seconds);

}  // namespace mig::shadow
