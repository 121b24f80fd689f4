// Moving every job off this host: `migctl drain` (which also makes the host refuse new
// jobs until `migctl undrain`) and the *owner returns* policy (docs/policies.md) share
// it. Each job goes to the least loaded host that accepts it (shadow/policy.h,
// rankDestinations), through the same hop as `migctl migrate`.
#pragma once

#include "shadow/daemon.h"

namespace mig::shadow {

// What became of one job.
struct MoveOutcome {
  pid_t vpid = 0;              // its PID at home
  kj::String home;
  kj::String command;
  bool moved = false;
  kj::String destination;      // its name in the nodes file (moved)
  double freezeMs = 0;
  kj::String error;            // why not (not moved)
};

// What a hop of one job measured (rpc::MigrationResult's figures that policies use).
struct HopResult {
  double freezeMs = 0;
  uint64_t imageBytes = 0;
  double transferMs = 0;   // capture and transfer of the image
};

// One hop, through the same sender as `migctl migrate`: a job that migrated in
// (hostedId, HostedJob) or, with hostedId 0, the job `pid` at home here (Local.migrate,
// which keeps its history entry; the caller keeps the others').
kj::Promise<HopResult> moveJob(Daemon& d, uint64_t hostedId, pid_t pid, kj::StringPtr name);

// Whether `pid`, a PID `migctl list` shows as a job at home here (a process here whose
// shim listens as that PID), is in fact a job that migrated in: its shim listens as its
// PID at home, which may be the PID of another process here (`migctl list` then shows
// that process's command). Such a row is not a job at home to move.
bool listensAsGuest(Daemon& d, pid_t pid);

// The hosts as Local.nodes sees them now (the figures the daemons exchange); an
// unreachable one has its name only. Drains and balance choose among them.
kj::Promise<kj::Array<Destination>> destinations(Daemon& d);

// A running job whose home is here, as `migctl list` shows it (Local.list), and not a
// job that migrated in (listensAsGuest).
struct JobAtHome {
  uint64_t jobId = 0;  // 0: it never moved
  pid_t vpid = 0;
  kj::String location;
  kj::String command;
  double ageSeconds = 0;
};
kj::Promise<kj::Array<JobAtHome>> jobsAtHome(Daemon& d);

// Why this host refuses a new job now (drained, its owner is back), or nothing.
kj::Maybe<kj::String> admissionRefusal(Daemon& d);

// Sets or clears the drained state; when set, moves the jobs off (evacuate) and
// answers with one outcome per job. timeLimitMs 0: the policy's.
kj::Promise<kj::Array<MoveOutcome>> drainHere(Daemon& d, bool drained, bool all, uint64_t timeLimitMs);

// Moves every job that migrated in (with `all`, also the jobs whose home is here and
// that run here) off this host, one after the other; none is started after
// timeLimitMs. `why` goes into the log. Fails if a round is already under way.
kj::Promise<kj::Array<MoveOutcome>> evacuate(Daemon& d, bool all, uint64_t timeLimitMs, kj::StringPtr why);

// Local.drain: here, or on another host through its Node.drain.
kj::Promise<void> localDrain(Daemon& d, capnp::CallContext<rpc::Local::DrainParams, rpc::Local::DrainResults> context);

void fillMoves(capnp::List<rpc::JobMove>::Builder out, kj::ArrayPtr<const MoveOutcome> moves);

// The *owner returns* policy: measures the own load every sample interval and, when
// the owner is back (policy.h, ownerIsBack), refuses new jobs and evacuates. Runs
// until shadowd stops; does nothing unless enabled in the policy.
kj::Promise<void> watchOwner(Daemon& d);

}  // namespace mig::shadow
