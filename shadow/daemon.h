// shadowd's state and the operations its RPC services share: who we are, the jobs
// whose home is here (and their deputies), the jobs that migrated in and run here,
// and logged-in links to peer shadowds.
#pragma once

#include "shadow/cluster_key.h"
#include "shadow/hex.h"
#include "shadow/job_calls.h"
#include "shadow/link_process.h"
#include "shadow/metrics.h"
#include "shadow/mig.capnp.h"
#include "shadow/move_history.h"
#include "shadow/peer_login.h"
#include "shadow/policy.h"
#include "shadow/runnable.h"

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/map.h>
#include <kj/vector.h>

#include <sys/types.h>

namespace mig::shadow {

struct DaemonConfig {
  kj::String listen;          // host:port for peers ("" = none)
  kj::String advertise;       // our address as peers should reach us (default: listen)
  kj::String socketPath;      // owner-only Unix socket for migctl and deputies
  kj::String relayPath;       // Unix socket where migrated jobs' shims send calls home
  kj::String spoolDir;        // incoming images
  kj::String migctl;          // the migctl that sends and restores images
  kj::String deputy;          // the mig-deputy a job's home process becomes
  kj::String migLink;         // the link process of each job that migrated in (link_process.h)
  kj::StringPtr logName = "shadowd";  // what log lines are signed with ("mig-link" there)
  kj::Vector<kj::String> localPaths;  // host-local path prefixes (shared file systems)
  kj::HashMap<kj::String, kj::String> nodes;  // name -> address (--nodes FILE)
  kj::String keyPath;         // "" = no key
  // Before login (DESIGN.md, Security): the time a TCP peer has to log in, and how many
  // may be waiting to at once.
  uint64_t loginTimeoutMs = 10000;
  size_t maxPendingLogins = 16;
  // --insecure-plaintext-links: for benchmarks only (secure_stream.h).
  LinkMode linkMode = LinkMode::ENCRYPTED;
  // --no-direct-link: jobs that migrated in reach their deputies through the shadowds
  // (shadow/direct_link.h).
  bool directLink = true;
  // A hop whose image makes no progress for this long is cancelled: the sender resumes
  // the job where it was, the destination deletes what it received.
  uint64_t transferTimeoutMs = 30000;
  // --link-lost-after: a job whose direct link home stays broken this long is lost
  // (its deputy ends with status 87; shadow/direct_link.h). Under the shim's 120 s
  // wait for an answer, so that a call the job still waits for is never given up
  // by the job while home may run it.
  uint64_t linkLostAfterMs = 90000;
  uint16_t metricsPort = 0;   // --metrics-port: Prometheus metrics on 127.0.0.1 (0: none)
  // --stop-time-limit: on SIGTERM, no move of a guest away is started after this long.
  uint64_t stopTimeLimitMs = 60000;
  PolicyConfig policy;        // --policy FILE (docs/policies.md)
};

// A signal sent to a job's PID at home, caught by its deputy.
struct PendingSignal {
  int signal;
  kj::Array<kj::byte> info;  // its siginfo_t, or empty
  bool toGroup = false;      // sent to its group: for its group where it runs (Node.signal)
};

// A job whose home is this host.
struct HomeJob {
  uint64_t id;
  kj::Array<kj::byte> token;
  pid_t vpid;
  kj::String command;
  kj::String location;        // address of the host it runs on; "" = still here
  bool migrating = false;
  bool ended = false;         // its end was reported; the deputy is exiting
  double startedAt;           // CLOCK_REALTIME seconds
  kj::Maybe<rpc::Deputy::Client> deputy;
  kj::Vector<kj::Own<kj::PromiseFulfiller<rpc::Deputy::Client>>> deputyWaiters;
  // Sent to the job's PID at home while it moved: delivered in order once it runs again.
  kj::Vector<PendingSignal> signalsDuringMigration;
  // Its deputy passed on a TSTP, TTIN or TTOU and stops itself: the job has its stop
  // already. Both cleared when the deputy passes on a SIGCONT.
  bool stopForwarded = false;
  // Its deputy's group stand-in (deputy/stand_in.h): a pidfd and its PID, for
  // watchDeputy (local_service.cc).
  kj::AutoCloseFd standIn;
  pid_t standInPid = 0;
  bool deputyStopped = false;  // as shadowd last found it (local_service.cc followStops)
  uint64_t treeRoot = 0;      // moved with a process tree: the job id of its root (its own for the root)
  bool lost = false;          // its link home stayed broken past the limit (Local.linkLost)
  double lostAt = 0;          // when (CLOCK_REALTIME seconds); kept in the spool (lost_jobs.h)
  uint64_t ownLostAfterMs = 0;  // its own limit (MIG_LINK_LOST_AFTER, told by its deputy); 0: home's
  // Its calls come through this shadowd on a login of the job's own (Node.deputy
  // relayed) while `relayedFrom` is where it runs (relayed()); `relayLogin` counts those
  // logins (the newest is its link); a broken one starts `relayLost`, the limit for a
  // new one to come (services.h relayedLinkDown).
  kj::String relayedFrom;
  uint64_t relayLogin = 0;
  kj::Promise<void> relayLost = nullptr;
  // A hop home under way (node_service.cc commitHomecoming): told when the deputy
  // registers again, its restart having failed before the restorer.
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> cameBack;
  bool relayed() const { return location.size() > 0 && relayedFrom == location; }
};

// A job that migrated in and runs here.
struct HostedJob {
  uint64_t id;
  kj::Array<kj::byte> token;
  kj::String home;
  pid_t vpid;
  pid_t realPid = 0;
  kj::String command;
  bool leaving = false;       // migrating away: its exit is not the job's end
  bool running = false;       // its shim reached the relay
  rpc::NetworkPolicy network = rpc::NetworkPolicy::HOME;  // what it was moved here with
  double startedAt;
  kj::Own<kj::PromiseFulfiller<void>> onRunning;
  kj::Own<JobCalls> calls;    // its calls on their way home
  kj::Own<LinkProcess> link;  // where they go: its link process (link_process.h)
  kj::Own<kj::PromiseFulfiller<void>> onGone;  // it left: told once its process is gone here
};

// What homeJob's failure says: a host whose job's home answers it (a restarted home
// before the deputy registered again) may ask again (job_calls.cc).
inline constexpr const char* kUnknownJob = "no such job here, or a wrong job token";

class Daemon {
 public:
  Daemon(kj::AsyncIoContext& io, DaemonConfig config, ClusterKey key);

  kj::AsyncIoContext& io() { return io_; }

  // A hosted job that left (its sender succeeded): resolves once its process here has
  // ended and its spool files are deleted (node_service.cc, watchJob), or after 10 s,
  // so that a hop reports success with nothing of the job left here. Its exit takes a
  // while for a large job, longer after pre-copy (its whole memory was copied).
  kj::Promise<void> hostedJobGone(uint64_t id);
  kj::UnixEventPort& eventPort() { return io_.unixEventPort; }
  const DaemonConfig& config() const { return config_; }
  const ClusterKey& key() const { return key_; }
  kj::StringPtr address() const { return config_.advertise; }

  // A logged-in Node of the peer at `address` (or node name from --nodes); links are
  // kept and made again when they break.
  kj::Promise<rpc::Node::Client> peer(kj::StringPtr address);
  kj::String resolveNode(kj::StringPtr nameOrAddress) const;
  // The name the --nodes file gives `address` (as the user knows the host), else the address.
  kj::String nodeName(kj::StringPtr address) const;
  void dropPeer(kj::StringPtr address);

  kj::HashMap<uint64_t, kj::Own<HomeJob>>& homeJobs() { return homeJobs_; }
  kj::HashMap<uint64_t, kj::Own<HostedJob>>& hostedJobs() { return hostedJobs_; }
  // The process group here of a hosted job that ended (its PID: it led the group),
  // kept a few seconds for group signals from its home (Node.signal `toGroup`): its
  // children born here outlive it, and its deputy may pass one on after its end.
  struct EndedGroup {
    kj::Array<kj::byte> token;
    pid_t group;
  };
  kj::HashMap<uint64_t, EndedGroup>& endedGroups() { return endedGroups_; }
  HomeJob* homeJobByVpid(pid_t vpid);
  HostedJob* hostedJob(uint64_t id, kj::ArrayPtr<const kj::byte> token);
  HomeJob& homeJob(uint64_t id, kj::ArrayPtr<const kj::byte> token);  // throws kUnknownJob if unknown

  // The job's deputy, once it has registered.
  kj::Promise<rpc::Deputy::Client> deputyOf(HomeJob& job);
  void deputyRegistered(HomeJob& job, rpc::Deputy::Client deputy);

  // Runs `migctl send` for a job that runs here and fills `result` from what it
  // reports; fails with its one-line error. With becomeDeputy, the process (at home)
  // becomes the job's deputy, else it ends once the job runs at `to`. Without `only`,
  // a process with children is refused (migctl send), unless `treeMembers` (at home)
  // names a job record for each ("PID:JOBID:TOKENHEX ...", MIG_TREE_MEMBERS): the tree
  // then moves whole.
  kj::Promise<void> runSender(rpc::MigrationResult::Builder result, pid_t realPid, uint64_t jobId, kj::ArrayPtr<const kj::byte> token,
                                    kj::StringPtr home, pid_t vpid, kj::StringPtr command,
                                    kj::StringPtr to, rpc::NetworkPolicy network, bool becomeDeputy,
                                    rpc::MigrationMode mode = rpc::MigrationMode::BEST, bool only = false,
                                    kj::StringPtr treeMembers = nullptr);

  // Whether new jobs are taken here (drain, owner returns: shadow/drain.h).
  HostAdmission& admission() { return admission_; }
  // This host's runnable threads (balance, placement, NodeInfo.runnable) and the CPUs
  // it counts as its own ([balance] cpus, else the CPUs online).
  RunnableMeter& runnable() { return runnable_; }
  // What shadowd counts for --metrics-port (shadow/metrics.h).
  Metrics& metrics() { return metrics_; }
  double cpus() const;
  // The rates of the images this shadowd sent, per destination address (balance's cost
  // of a move), and the slots this host promised to jobs other hosts' policies send it
  // (Node.claimSlot): shadow/policy.h.
  TransferRates& transferRates() { return transferRates_; }
  SlotClaims& slotClaims() { return *slotClaims_; }

  kj::TaskSet& tasks() { return tasks_; }
  void log(kj::StringPtr line);
  // The moves asked of this shadowd, for `migctl history`.
  MoveHistory& moves() { return moves_; }

 private:
  class ErrorHandler final : public kj::TaskSet::ErrorHandler {
   public:
    explicit ErrorHandler(Daemon& d) : d_(d) {}
    void taskFailed(kj::Exception&& e) override;
    Daemon& d_;
  };
  kj::AsyncIoContext& io_;
  DaemonConfig config_;
  ClusterKey key_;
  ErrorHandler errorHandler_;
  kj::TaskSet tasks_;
  kj::HashMap<kj::String, kj::Own<PeerLink>> peers_;
  kj::HashMap<uint64_t, kj::Own<HomeJob>> homeJobs_;
  kj::HashMap<uint64_t, kj::Own<HostedJob>> hostedJobs_;
  kj::HashMap<uint64_t, EndedGroup> endedGroups_;
  MoveHistory moves_;
  HostAdmission admission_;
  RunnableMeter runnable_;
  Metrics metrics_;
  TransferRates transferRates_;
  kj::Own<SlotClaims> slotClaims_ = kj::refcounted<SlotClaims>();
  kj::HashMap<kj::String, bool> linkedBefore_;  // peers a link was ever made to (reconnects)
};

// Gives the job's deputy home's record of the job (where it runs, its command, when it
// started, its tree), which it gives back to a restarted shadowd (Deputy.keepRecord,
// Local.registerDeputy again). Once the deputy has registered; failures are only logged.
void keepRecordAtDeputy(Daemon& d, HomeJob& job);

// The jobs listed `lost`, kept for a restarted shadowd (lost_jobs.h): `saveLostJobs`
// writes them, `loadLostJobs` lists them again at start-up. Failures are logged.
void saveLostJobs(Daemon& d);
void loadLostJobs(Daemon& d);

// The job's link home stayed broken for `downMs`, past its limit `limitMs`: it is listed
// "lost" from now on (also after a restart) and logged; its deputy's end (status 87) is
// not a kill to pass on.
void markLinkLost(Daemon& d, HomeJob& job, uint64_t downMs, uint64_t limitMs);

double nowSeconds();
kj::String lastLine(kj::StringPtr text);

}  // namespace mig::shadow
