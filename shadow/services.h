// The RPC services of shadowd (rsc/mig.capnp): Gate (a TCP connection before login),
// Node (a logged-in peer), Local (migctl and deputies on the Unix socket), and the
// ImageSink of an incoming migration.
#pragma once

#include "shadow/daemon.h"

namespace mig::shadow {

// onLogin: called once the peer has proven it holds the cluster key; watchLiveness:
// has its connection watched for liveness (rpc_server.h), asked by the Node it gets.
rpc::Gate::Client makeGate(Daemon& d, kj::Function<void()> onLogin, kj::Function<void()> watchLiveness);
// `watchLiveness`: for a peer's login (none: this host's own Node, drain.cc).
rpc::Node::Client makeNode(Daemon& d, kj::Maybe<kj::Function<void()>> watchLiveness = nullptr);

// A job's relayed link home (Node.deputy relayed) broke with login `generation` its
// newest: unless a new login takes the job within its limit (relayLimitMs), it is lost
// here as a direct link's deputy would lose it (listed "lost", the deputy ends with
// status 87). `since`: what broke, for the log.
void relayedLinkDown(Daemon& d, uint64_t jobId, uint64_t generation, kj::StringPtr since);
uint64_t relayLimitMs(const Daemon& d, const HomeJob& job);

rpc::Local::Client makeLocal(Daemon& d);
// For a connection on the local socket from process `peerPid` of user `peerUid`
// (SO_PEERCRED): what a deputy or link process registering again must match.
rpc::Local::Client makeLocal(Daemon& d, pid_t peerPid, uid_t peerUid);

// The processes under libmig.so here that shadowd has no job for: jobs at home that
// never moved (`migctl list` shows them `running`).
size_t untrackedJobsHere(Daemon& d);

// Ends the job (wherever it runs) when its deputy, the process `pidfd` refers to, ends
// before the job has: killed, or failed to start.
void watchDeputy(Daemon& d, uint64_t jobId, kj::AutoCloseFd pidfd);

// Delivers `sig` to a job whose home is here, on the host it runs on, with `info` (the
// siginfo_t its deputy caught; empty: as kill(2) sends it); `toGroup`: to its process
// group there, its children born there with it (deputy/stand_in.h).
kj::Promise<void> sendSignal(Daemon& d, HomeJob& job, int sig, kj::ArrayPtr<const kj::byte> info = nullptr,
                             bool toGroup = false);

// Where the host the job runs on, `location`, tells home the job's stops there
// (rpc::JobStops, given with Node.deputy).
rpc::JobStops::Client jobStops(Daemon& d, uint64_t jobId, kj::StringPtr location);

// Watches a guest learned back from its link process (Local.relearnGuest) as one that
// arrived here: its end told home or its leaving noted, its image `image` deleted.
void watchGuest(Daemon& d, uint64_t jobId, kj::Promise<int> exited, kj::String image);

// The Unix socket where the shims of jobs running here send their calls home.
kj::Promise<void> serveCallRelay(Daemon& d, kj::ConnectionReceiver& listener);

}  // namespace mig::shadow
