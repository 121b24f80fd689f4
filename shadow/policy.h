// shadowd's policies (docs/policies.md): the policy file (`shadowd --policy FILE`,
// TOML read by toml++), and the decisions as pure functions of what shadowd measured,
// so that they can be tested without hosts: when the owner of a host is back (its
// own processes busy for a while), which host a job leaving this one goes to, whether
// a job is worth moving (balance), whether a host still has room for one more job
// another host's policy sends it (the slots it promised), and the transfer rates the
// cost of a move is estimated from. What acts on them is shadow/drain and
// shadow/balance.
#pragma once

#include <kj/common.h>
#include <kj/map.h>
#include <kj/refcount.h>
#include <kj/string.h>
#include <kj/vector.h>

#include <cstdint>

namespace mig::shadow {

// *owner returns*: when the CPU used by this host's own processes (not shadowd's nor
// the jobs it runs) stays at or above `threshold` CPUs for `sustainSeconds`, every
// migrated-in job leaves. Measured every `sampleSeconds`.
struct OwnerReturnsParams {
  bool enabled = false;
  double threshold = 0.5;
  double sustainSeconds = 10;
  double sampleSeconds = 1;
};

// Moving jobs off (migctl drain, owner returns): no new move starts after this long.
struct DrainParams {
  double timeLimitSeconds = 120;
};

struct PolicyConfig;  // below, after the parameters of every policy


// Whether this host takes new jobs, and why not (NodeInfo.drained, ownerBack).
struct HostAdmission {
  bool drained = false;     // migctl drain, until migctl undrain
  bool ownerBack = false;   // owner returns decided so at the last sample
  bool evacuating = false;  // jobs are being moved off (one round at a time)
  double ownCpus = 0;       // the last own-load sample
  bool stopping = false;    // SIGTERM with jobs that depend on this shadowd (main.cc)
};

// Reads a policy file's text (`path` only names it in errors). On error returns
// "PATH:LINE:COLUMN: reason" (unknown key, wrong type, bad number, bad TOML) and
// leaves `out` unspecified.
kj::Maybe<kj::String> parsePolicy(kj::StringPtr text, kj::StringPtr path, PolicyConfig& out);
// The same from the file; a file that cannot be read is an error too.
kj::Maybe<kj::String> loadPolicy(kj::StringPtr path, PolicyConfig& out);

// One measurement of the own load: the CPUs this host's own processes used, on
// average, over the interval that ended at `at` (seconds, any monotonic origin).
struct LoadSample {
  double at;
  double ownCpus;
};

// Whether the owner is back at `now`: the samples (oldest first) show the own load at
// or above the threshold without a break for at least sustainSeconds up to now. The
// busy stretch starts where the sample before its first one ended (that sample's
// interval was not busy throughout), or at its first sample's start when there is none
// before it. A gap in the samples longer than two sample intervals ends a stretch
// (shadowd was not measuring: nothing is known of it), as does a sample older than one
// interval at `now`.
bool ownerIsBack(kj::ArrayPtr<const LoadSample> samples, const OwnerReturnsParams& p, double now);

// A host a job may leave for, as shadowd sees it (Local.nodes).
struct Destination {
  kj::String name;
  kj::String address;       // as it says it is reached (NodeInfo.address)
  bool reachable = false;
  bool accepting = false;   // not drained, its owner not back
  double load1 = 0;
  double runnable = 0;      // its own load over the balance window (NodeInfo.runnable)
  double cpus = 0;          // the CPUs it counts as its own
  uint32_t jobs = 0;
  uint32_t sentHere = 0;    // jobs this drain has already sent it (their load is not seen yet)
};

// The hosts to try for one job leaving the host whose address is `self`, best first:
// reachable, accepting, not `self` (by address: shadowds on loopback share a host
// name), by load1 plus the jobs already sent there in this round (each counted as
// one busy CPU, which the 1-minute load has not caught up with), then fewest jobs,
// then name.
kj::Vector<size_t> rankDestinations(kj::ArrayPtr<const Destination> hosts, kj::StringPtr self);

// *balance* (docs/policies.md; shadow/balance.h acts on it). A job
// may move from its host (src) to another (dst) when all of these hold:
//   - it has not moved for noReturnSeconds (no ping-pong);
//   - the CPU share it can expect there beats the one it has by minShareGain, a share
//     on a host being min(1, cpus / runnable), the job counted on both sides;
//   - it has run at least ageMultiple times the move's cost, where the cost is the time
//     it is frozen: fixedCostSeconds plus its image size over the measured transfer
//     rate (a job that has run T seconds is likely to run about T more: the young are
//     not worth moving);
//   - the expected gain, the share gained times that expected remaining time, is
//     more than the cost.
struct BalanceParams {
  bool enabled = false;
  double cpus = 0;               // this host's CPUs; 0: the CPUs online (sysconf)
  double sampleSeconds = 1;      // how often the runnable threads are counted
  double windowSeconds = 5;      // a host's load: the average count over this long
  double noReturnSeconds = 120;
  double minShareGain = 0.25;
  double ageMultiple = 4;
  double fixedCostSeconds = 0.1;
  double defaultBytesPerSecond = 50e6;  // until a transfer has been measured
};

struct BalanceInput {
  double srcLoad;            // runnable on the job's host, the job included
  double srcCpus;
  double dstLoad;            // runnable on the other host (without the job)
  double dstCpus;
  double imageBytes;         // the job's size (its resident memory)
  double ranSeconds;         // how long the job has run
  double sinceMoveSeconds;   // since its last move (a large number if it never moved)
  double bytesPerSecond;     // measured transfer rate to dst; 0: not measured yet
};

struct BalanceDecision {
  bool move = false;
  double costSeconds = 0;    // the move's estimated freeze time
  double gainSeconds = 0;    // the CPU time it is expected to gain
  kj::StringPtr why;         // the condition that decided (a static string)
};

// [node_aliases]: other names for the hosts of the nodes file, as another system (a
// batch system: Slurm's NodeName) calls them. `migctl drain`, `undrain`, `migrate --to`
// take them (Daemon::resolveNode).
struct NodeAlias {
  kj::String alias;
  kj::String node;    // a name in the nodes file (checked at start: checkAliases)
  kj::String where;   // "PATH:LINE:COLUMN" of its line, for errors
};

struct PolicyConfig {
  OwnerReturnsParams ownerReturns;
  DrainParams drain;
  BalanceParams balance;
  kj::Vector<NodeAlias> nodeAliases;
};

BalanceDecision shouldBalance(const BalanceInput& in, const BalanceParams& p);

// The node `name` stands for in [node_aliases], if it is an alias.
kj::Maybe<kj::StringPtr> aliasTarget(const PolicyConfig& c, kj::StringPtr name);
// At start, once the nodes file is read: an alias naming no node, or one that is itself
// the name of another node, is refused ("PATH:LINE:COLUMN: reason").
kj::Maybe<kj::String> checkAliases(const PolicyConfig& c, const kj::HashMap<kj::String, kj::String>& nodes);

// The CPU share a job gets on a host with `runnable` threads wanting CPU (itself
// included) on `cpus` CPUs: min(1, cpus / runnable).
double cpuShare(double runnable, double cpus);

// Transfer rates to the other hosts, learned from every image this shadowd sends
// (migctl migrate, drain, owner returns, maintenance, balance, placement: all go
// through Daemon::runSender), for the cost of a balance move.
class TransferRates {
 public:
  // The sends to one host that count: the last few, so that a changed network is
  // learned within a few moves.
  static constexpr size_t kKept = 8;

  // One image sent to `to` (an address): `bytes` in `seconds`, from the start of its
  // capture to its last byte sent (with pre-copy: its rounds and the frozen rest).
  void learn(kj::StringPtr to, double bytes, double seconds);
  // Bytes per second to `to`: the bytes of its kept sends over their time (a big send
  // counts more than a small one, whose time is mostly latency); 0: none measured.
  double rate(kj::StringPtr to) const;
  // How many sends to `to` that rate is from.
  size_t samples(kj::StringPtr to) const;

 private:
  struct Sample {
    double bytes;
    double seconds;
  };
  kj::HashMap<kj::String, kj::Vector<Sample>> byHost_;
};

// *balance* coordination (docs/policies.md, "Coordination between hosts"): another
// host's policy (balance, placement) that means to send a job here first asks this
// host for a slot (Node.claimSlot). The slots promised count on top of this host's
// measured runnable threads, which see a job only once it runs here and only
// gradually (an average over the window, of threads at least a sample old): a slot
// granted and not settled counts as one runnable thread, one whose job arrived e
// seconds ago counts 1 - max(0, e - lag) / window, the part of the job the window's
// average does not show yet (lag: two sample intervals, before the count sees the job
// at all); one whose move did not happen, nothing. Refcounted: a granted slot is held by its capability
// (shadow/balance.cc), which may outlive the daemon's other state at exit.
class SlotClaims : public kj::Refcounted {
 public:
  uint64_t grant();
  // Its job runs here since `now` (monotonic seconds).
  void arrived(uint64_t id, double now);
  // Its move did not happen, or the sender went away without saying.
  void release(uint64_t id);
  // The runnable threads the promised slots stand for at `now` (see above); forgets
  // the arrivals the window's average shows whole.
  double promised(double now, double windowSeconds, double lagSeconds);
  // Slots granted whose move is not over.
  size_t pending() const;

 private:
  struct Slot {
    uint64_t id;
    double arrivedAt;  // < 0: on its way
  };
  uint64_t next_ = 1;
  kj::Vector<Slot> slots_;
};

struct ClaimInput {
  double runnable;      // this host's measured runnable threads (its window average)
  double cpus;          // its CPUs
  double promised;      // SlotClaims::promised
  double srcShare;      // the CPU share the job has where it runs now
  double minShareGain;  // the sender's [balance] min_share_gain
};

struct ClaimDecision {
  bool grant = false;
  double share = 0;     // what the job would get here, the promised slots counted
  kj::StringPtr why;    // a static string
};

// A slot is granted when the job, counted with the promised slots, still gets at least
// minShareGain more CPU here than where it runs: the sender's own rule (shouldBalance,
// placement), with what only this host knows.
ClaimDecision decideClaim(const ClaimInput& in);

}  // namespace mig::shadow
