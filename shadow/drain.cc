// See drain.h. A round moves its jobs one after the other: each move asks the nodes
// again (Local.nodes, the loads the daemons exchange), so a job goes where the previous
// one did not just make busy. The members of a process tree that moved here together
// move on together (Node.sendTree, its root's turn), as `migctl migrate` at home moves
// them; a member whose tree runs elsewhere too stays, with a line saying why.
#include "shadow/drain.h"

#include "shadow/drain_plan.h"

#include "shadow/error.h"
#include "shadow/own_load.h"
#include "shadow/services.h"

#include <capnp/message.h>
#include <kj/debug.h>

#include <cstdio>
#include <ctime>
#include <unistd.h>

namespace mig::shadow {
namespace {

kj::String hostName() {
  char h[256] = {};
  gethostname(h, sizeof h - 1);
  return kj::str(h);
}

double monotonicSeconds() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec / 1e9;
}

HopResult hopResult(rpc::MigrationResult::Reader r) {
  HopResult h;
  h.freezeMs = r.getFreezeMs();
  h.imageBytes = r.getImageBytes();
  h.transferMs = r.getTransferMs();
  return h;
}

struct Target {
  uint64_t hostedId = 0;  // a job that migrated in; 0: a job at home here (pid)
  double askedAt = 0;     // when its turn came (CLOCK_REALTIME seconds, for the history)
  pid_t pid = 0;
  pid_t vpid = 0;
  kj::String home;
  kj::String command;
  kj::Vector<uint64_t> members;  // a tree's root: the hosted ids of its other members, moved with it
  kj::String refusal;            // not to move: why (a member of a tree that runs elsewhere too)
};

// A job that migrated in, as a drain's target.
Target targetOf(const HostedJob& j) {
  Target t;
  t.hostedId = j.id;
  t.pid = j.realPid;
  t.vpid = j.vpid;
  t.home = kj::str(j.home);
  t.command = kj::str(j.command);
  return t;
}

// A guest's tree as its home knows it (Node.treeOf): empty when it moved alone.
struct Tree {
  kj::Vector<uint64_t> ids;  // root first
  kj::Vector<kj::String> hosts;
  kj::Vector<pid_t> pids;
};

struct Round {
  kj::Vector<Target> targets;
  kj::Vector<MoveOutcome> outcomes;
  double deadline;
  double limitSeconds;
  kj::HashMap<kj::String, uint32_t> sentHere;
  kj::String self;
  kj::String why;
};

// One hop of one job, or of a tree with its root's turn, to `name`; resolves with its
// freeze time.
kj::Promise<double> moveOne(Daemon& d, const Target& t, kj::StringPtr name) {
  if (t.members.size() == 0) return moveJob(d, t.hostedId, t.pid, name).then([](HopResult r) { return r.freezeMs; });
  rpc::Node::Client self = makeNode(d);
  auto req = self.sendTreeRequest();
  auto keys = req.initJobs(static_cast<unsigned>(t.members.size() + 1));
  rpc::NetworkPolicy network = rpc::NetworkPolicy::HOME;
  for (size_t i = 0; i <= t.members.size(); ++i) {
    uint64_t id = i == 0 ? t.hostedId : t.members[i - 1];
    HostedJob* job = nullptr;
    KJ_IF_MAYBE(j, d.hostedJobs().find(id)) { job = j->get(); }
    require(job != nullptr, "a process of its tree ended before its turn");
    if (i == 0) network = job->network;
    keys[static_cast<unsigned>(i)].setJobId(id);
    keys[static_cast<unsigned>(i)].setToken(job->token);
  }
  req.setTo(name);
  req.setNetwork(network);
  req.setMode(rpc::MigrationMode::BEST);
  return req.send()
      .then([](capnp::Response<rpc::Node::SendTreeResults> r) { return r.getResult().getFreezeMs(); })
      .attach(kj::mv(self));
}

void recordOne(Daemon& d, Round& r, const Target& t, kj::Maybe<kj::StringPtr> to, double freezeMs, kj::StringPtr error);

// A tree's outcome is each member's, one line each.
void record(Daemon& d, Round& r, const Target& t, kj::Maybe<kj::StringPtr> to, double freezeMs, kj::StringPtr error) {
  recordOne(d, r, t, to, freezeMs, error);
  for (uint64_t id : t.members) {
    Target m;
    m.hostedId = id;
    m.askedAt = t.askedAt;
    m.home = kj::str(t.home);
    KJ_IF_MAYBE(j, d.hostedJobs().find(id)) {
      m.vpid = (*j)->vpid;
      m.command = kj::str((*j)->command);
    }
    recordOne(d, r, m, to, freezeMs, error);
  }
}

void recordOne(Daemon& d, Round& r, const Target& t, kj::Maybe<kj::StringPtr> to, double freezeMs, kj::StringPtr error) {
  MoveOutcome o;
  o.vpid = t.vpid;
  o.home = d.nodeName(t.home);  // as the user knows it
  o.command = kj::str(t.command);
  KJ_IF_MAYBE(name, to) {
    o.moved = true;
    o.destination = kj::str(*name);
    o.freezeMs = freezeMs;
    d.log(kj::str(r.why, ": PID ", t.vpid, " of ", d.nodeName(t.home), " (", t.command, ") moved to ", *name,
                  ", frozen ", freezeMs, " ms"));
  } else {
    o.destination = kj::str("");
    o.error = kj::str(error);
    d.log(kj::str(r.why, ": PID ", t.vpid, " of ", d.nodeName(t.home), " (", t.command, ") could not move: ", error));
  }
  // A job at home went through Local.migrate, which keeps its own history entry.
  if (t.hostedId != 0) {
    Move m;
    m.time = t.askedAt;
    m.pid = t.vpid;
    m.jobId = t.hostedId;
    m.from = d.nodeName(d.address());
    m.to = kj::str(o.destination);
    m.ok = o.moved;
    m.freezeMs = o.freezeMs;
    m.error = kj::str(o.error);
    m.command = kj::str(t.command);
    d.moves().add(kj::mv(m));
  }
  r.outcomes.add(kj::mv(o));
}

// Tries the ranked hosts in turn for target i, then goes on with the next target.
kj::Promise<void> moveFrom(Daemon& d, Round& r, size_t i);

kj::Promise<void> tryHosts(Daemon& d, Round& r, size_t i, kj::Array<Destination> hosts, kj::Vector<size_t> ranked,
                           size_t k, kj::String errors) {
  const Target& t = r.targets[i];
  auto name = kj::str(hosts[ranked[k]].name);
  return moveOne(d, t, name).then(
      [&d, &r, i, name = kj::str(name)](double freezeMs) mutable {
        KJ_IF_MAYBE(n, r.sentHere.find(name)) { ++*n; } else { r.sentHere.insert(kj::str(name), 1u); }
        record(d, r, r.targets[i], kj::StringPtr(name), freezeMs, nullptr);
        return moveFrom(d, r, i + 1);
      },
      [&d, &r, i, hosts = kj::mv(hosts), ranked = kj::mv(ranked), k, errors = kj::mv(errors),
       name = kj::str(name)](kj::Exception&& e) mutable -> kj::Promise<void> {
        auto all = kj::str(errors, errors.size() > 0 ? "; " : "", "to ", name, ": ", oneLine(e.getDescription()));
        uint64_t hosted = r.targets[i].hostedId;
        bool still = hosted == 0 || d.hostedJobs().find(hosted) != nullptr;
        if (k + 1 < ranked.size() && monotonicSeconds() < r.deadline && still) {
          return tryHosts(d, r, i, kj::mv(hosts), kj::mv(ranked), k + 1, kj::mv(all));
        }
        record(d, r, r.targets[i], nullptr, 0, all);
        return moveFrom(d, r, i + 1);
      });
}

kj::Promise<void> moveFrom(Daemon& d, Round& r, size_t i) {
  if (i >= r.targets.size()) return kj::READY_NOW;
  r.targets[i].askedAt = nowSeconds();
  if (r.targets[i].refusal.size() > 0) {
    record(d, r, r.targets[i], nullptr, 0, r.targets[i].refusal);
    return moveFrom(d, r, i + 1);
  }
  if (monotonicSeconds() >= r.deadline) {
    record(d, r, r.targets[i], nullptr, 0,
           kj::str("not started: the time limit of ", r.limitSeconds, " s ran out before its turn"));
    return moveFrom(d, r, i + 1);
  }
  return destinations(d).then([&d, &r, i](kj::Array<Destination> hosts) mutable -> kj::Promise<void> {
    for (auto& h : hosts) {
      KJ_IF_MAYBE(n, r.sentHere.find(h.name)) { h.sentHere = *n; }
    }
    auto ranked = rankDestinations(hosts, r.self);
    if (ranked.size() == 0) {
      record(d, r, r.targets[i], nullptr, 0, "no other host accepts it (each is drained, busy with its owner's "
                                             "processes, or does not answer: migctl nodes)");
      return moveFrom(d, r, i + 1);
    }
    return tryHosts(d, r, i, kj::mv(hosts), kj::mv(ranked), 0, kj::str(""));
  });
}

// Asks each guest's home which tree it moved with. A home that cannot say (an older
// shadowd, or not reached within kTreeAskMs: the round does not wait on a host that is
// down) leaves it a job alone, moved as before trees.
constexpr uint64_t kTreeAskMs = 5000;

kj::Promise<kj::Array<Tree>> askTrees(Daemon& d, kj::ArrayPtr<const Target> targets) {
  auto asks = kj::heapArrayBuilder<kj::Promise<Tree>>(targets.size());
  for (auto& t : targets) {
    HostedJob* job = nullptr;
    if (t.hostedId != 0 && t.home != d.address()) {
      KJ_IF_MAYBE(j, d.hostedJobs().find(t.hostedId)) { job = j->get(); }
    }
    if (job == nullptr) {
      asks.add(Tree{});
      continue;
    }
    auto asked = d.peer(t.home)
                 .then([id = job->id, token = kj::heapArray<kj::byte>(job->token)](rpc::Node::Client node) {
                   auto req = node.treeOfRequest();
                   req.setJobId(id);
                   req.setToken(token);
                   return req.send();
                 })
                 .then([](capnp::Response<rpc::Node::TreeOfResults> r) {
                   Tree tree;
                   auto jobs = r.getJobs();
                   auto hosts = r.getHosts();
                   auto pids = r.getPids();
                   if (hosts.size() != jobs.size() || pids.size() != jobs.size()) return tree;
                   for (unsigned k = 0; k < jobs.size(); ++k) {
                     tree.ids.add(jobs[k].getJobId());
                     tree.hosts.add(kj::str(hosts[k]));
                     tree.pids.add(pids[k]);
                   }
                   return tree;
                 });
    asks.add(d.io().provider->getTimer()
                 .timeoutAfter(kTreeAskMs * kj::MILLISECONDS, kj::mv(asked))
                 .catch_([](kj::Exception&&) { return Tree{}; }));
  }
  return kj::joinPromises(asks.finish());
}

// The round's targets with each tree whose members all run here as one target (its
// root's), and each member of a tree that runs elsewhere too as a refusal (planDrain).
void groupTrees(Daemon& d, Round& r, kj::Array<Tree> trees) {
  auto guests = kj::heapArray<uint64_t>(r.targets.size());
  auto treeIds = kj::heapArray<kj::Vector<uint64_t>>(r.targets.size());
  for (size_t i = 0; i < r.targets.size(); ++i) {
    guests[i] = r.targets[i].hostedId;
    for (uint64_t id : trees[i].ids) treeIds[i].add(id);
  }
  auto plan = planDrain(guests, treeIds, [&d](uint64_t id) {
    KJ_IF_MAYBE(j, d.hostedJobs().find(id)) { return (*j)->running && !(*j)->leaving; }
    return false;
  });
  kj::Vector<Target> out;
  for (auto& step : plan) {
    if (step.kind == DrainStep::Kind::TREE) {
      HostedJob& root = *KJ_ASSERT_NONNULL(d.hostedJobs().find(step.id));
      Target whole = targetOf(root);
      whole.members = kj::mv(step.members);
      out.add(kj::mv(whole));
      continue;
    }
    size_t i = step.guest;
    Target& t = r.targets[i];
    if (step.kind == DrainStep::Kind::REFUSED) {
      const Tree& tree = trees[i];
      size_t k = step.away;
      auto where = tree.hosts[k] == d.address() ? kj::str("is moving or not running yet here")
                                                : kj::str("runs on ", d.nodeName(tree.hosts[k]));
      t.refusal = k == 0 ? kj::str("not moved alone: the root of its process tree, PID ", tree.pids[0], ", ", where,
                                   " (a tree moves whole: migctl migrate ", tree.pids[0], " at its home)")
                         : kj::str("not moved alone: its process tree (root PID ", tree.pids[0],
                                   ") is on several hosts, PID ", tree.pids[k], " ", where,
                                   " (migctl migrate --only moves one process alone)");
    }
    out.add(kj::mv(t));
  }
  r.targets = kj::mv(out);
}

}  // namespace

kj::Promise<kj::Array<Destination>> destinations(Daemon& d) {
  rpc::Local::Client local = makeLocal(d);
  auto asked = local.nodesRequest().send();
  return asked.then([](capnp::Response<rpc::Local::NodesResults> r) {
    auto nodes = r.getNodes();
    auto out = kj::heapArrayBuilder<Destination>(nodes.size());
    for (auto n : nodes) {
      Destination x;
      x.name = kj::str(n.getName());
      x.reachable = n.getReachable();
      if (x.reachable) {
        auto info = n.getInfo();
        x.address = kj::str(info.getAddress());
        x.accepting = !info.getDrained() && !info.getOwnerBack();
        x.load1 = info.getLoad1();
        x.runnable = info.getRunnable();
        x.cpus = info.getCpus();
        x.jobs = info.getJobs();
      } else {
        x.address = kj::str("");
      }
      out.add(kj::mv(x));
    }
    return out.finish();
  }).attach(kj::mv(local));
}

kj::Promise<kj::Array<JobAtHome>> jobsAtHome(Daemon& d) {
  rpc::Local::Client local = makeLocal(d);
  return local.listRequest().send().then([&d](capnp::Response<rpc::Local::ListResults> r) {
    kj::Vector<JobAtHome> out;
    for (auto j : r.getJobs()) {
      if (j.getState() != "running" || j.getHome() != d.address() || listensAsGuest(d, j.getVpid())) continue;
      JobAtHome a;
      a.jobId = j.getJobId();
      a.vpid = j.getVpid();
      a.location = kj::str(j.getLocation());
      a.command = kj::str(j.getCommand());
      a.ageSeconds = j.getAgeSeconds();
      out.add(kj::mv(a));
    }
    return out.releaseAsArray();
  }).attach(kj::mv(local));
}

kj::Promise<HopResult> moveJob(Daemon& d, uint64_t hostedId, pid_t pid, kj::StringPtr name) {
  if (hostedId != 0) {
    HostedJob* job = nullptr;
    KJ_IF_MAYBE(j, d.hostedJobs().find(hostedId)) { job = j->get(); }
    require(job != nullptr, "it ended before its turn");
    require(job->running && !job->leaving, "it is already moving");
    job->leaving = true;
    auto msg = kj::heap<capnp::MallocMessageBuilder>();
    auto result = msg->initRoot<rpc::MigrationResult>();
    uint64_t id = hostedId;
    return d.runSender(result, job->realPid, job->id, job->token, job->home, job->vpid, job->command,
                       d.resolveNode(name), job->network, false)
        .then([result]() mutable { return hopResult(result.asReader()); },
              [&d, id](kj::Exception&& e) -> HopResult {
                KJ_IF_MAYBE(j, d.hostedJobs().find(id)) { (*j)->leaving = false; }
                kj::throwFatalException(kj::mv(e));
              })
        .attach(kj::mv(msg));
  }
  rpc::Local::Client local = makeLocal(d);
  auto req = local.migrateRequest();
  req.setPid(pid);
  req.setTo(name);
  req.setNetwork(rpc::NetworkPolicy::HOME);
  return req.send()
      .then([](capnp::Response<rpc::Local::MigrateResults> r) { return hopResult(r.getResult()); })
      .attach(kj::mv(local));
}

bool listensAsGuest(Daemon& d, pid_t pid) {
  for (auto& e : d.hostedJobs()) {
    if (e.value->vpid == pid && e.value->realPid != pid) return true;
  }
  return false;
}

kj::Maybe<kj::String> admissionRefusal(Daemon& d) {
  auto& a = d.admission();
  if (a.stopping) return kj::str("shadowd on ", hostName(), " is stopping (SIGTERM): it takes no new jobs");
  if (a.drained) return kj::str(hostName(), " is drained (migctl undrain there takes jobs again)");
  if (a.ownerBack) {
    return kj::str(hostName(), "'s own processes are busy (", kj::str(static_cast<int>(a.ownCpus * 100 + 0.5) / 100.0),
                   " CPUs, owner returns policy): it takes no jobs now");
  }
  return nullptr;
}

kj::Promise<kj::Array<MoveOutcome>> evacuate(Daemon& d, bool all, uint64_t timeLimitMs, kj::StringPtr why) {
  require(!d.admission().evacuating, "jobs are already being moved off this host: try again once that is done");
  auto r = kj::heap<Round>();
  r->limitSeconds = timeLimitMs / 1000.0;
  r->deadline = monotonicSeconds() + r->limitSeconds;
  r->self = kj::str(d.address());
  r->why = kj::str(why);
  for (auto& e : d.hostedJobs()) {
    HostedJob& j = *e.value;
    if (!j.running || j.leaving) continue;
    // A job that moved back to its home runs here as a hosted job, but it is not a
    // guest: like the jobs at home that never moved, it stays unless told (--all).
    if (!all && j.home == d.address()) continue;
    r->targets.add(targetOf(j));
  }
  d.admission().evacuating = true;
  kj::Promise<void> listed = kj::READY_NOW;
  if (all) {
    // Jobs at home here that never moved: what `migctl list` shows as such.
    listed = jobsAtHome(d).then([&d, &r = *r](kj::Array<JobAtHome> jobs) {
      for (auto& j : jobs) {
        if (j.jobId != 0) continue;
        Target t;
        t.pid = j.vpid;
        t.vpid = j.vpid;
        t.home = kj::str(d.address());
        t.command = kj::mv(j.command);
        r.targets.add(kj::mv(t));
      }
    });
  }
  d.log(kj::str(why, ": moving jobs off this host, no move started after ", r->limitSeconds, " s"));
  Round& round = *r;
  return listed.then([&d, &round]() { return askTrees(d, round.targets); })
      .then([&d, &round](kj::Array<Tree> trees) {
        groupTrees(d, round, kj::mv(trees));
        return moveFrom(d, round, 0);
      })
      .then([&round]() { return round.outcomes.releaseAsArray(); })
      .attach(kj::mv(r), kj::defer([&d]() { d.admission().evacuating = false; }));
}

kj::Promise<kj::Array<MoveOutcome>> drainHere(Daemon& d, bool drained, bool all, uint64_t timeLimitMs) {
  d.admission().drained = drained;
  if (!drained) {
    d.log("undrained: taking jobs again");
    return kj::Array<MoveOutcome>();
  }
  d.log("drained: taking no new jobs");
  if (timeLimitMs == 0) timeLimitMs = static_cast<uint64_t>(d.config().policy.drain.timeLimitSeconds * 1000);
  // The moves are shadowd's, not the caller's: a migctl that goes away (Ctrl-C) does
  // not cancel a hop half done nor the jobs after it.
  auto paf = kj::newPromiseAndFulfiller<kj::Array<MoveOutcome>>();
  auto* answer = paf.fulfiller.get();
  d.tasks().add(kj::evalNow([&]() { return evacuate(d, all, timeLimitMs, "drain"); })
                    .then([answer](kj::Array<MoveOutcome> moves) { answer->fulfill(kj::mv(moves)); },
                          [answer](kj::Exception&& e) { answer->reject(kj::mv(e)); })
                    .attach(kj::mv(paf.fulfiller)));
  return kj::mv(paf.promise);
}

void fillMoves(capnp::List<rpc::JobMove>::Builder out, kj::ArrayPtr<const MoveOutcome> moves) {
  for (size_t i = 0; i < moves.size(); ++i) {
    auto m = out[static_cast<unsigned>(i)];
    m.setVpid(moves[i].vpid);
    m.setHome(moves[i].home);
    m.setCommand(moves[i].command);
    m.setMoved(moves[i].moved);
    m.setDestination(moves[i].destination);
    m.setFreezeMs(moves[i].freezeMs);
    m.setError(moves[i].error);
  }
}

kj::Promise<void> localDrain(Daemon& d, capnp::CallContext<rpc::Local::DrainParams, rpc::Local::DrainResults> context) {
  auto p = context.getParams();
  auto address = p.getNode().size() > 0 ? d.resolveNode(p.getNode()) : kj::str(d.address());
  context.getResults().setNode(d.nodeName(address));
  if (address == d.address()) {
    return drainHere(d, p.getDrained(), p.getAll(), p.getTimeLimitMs()).then([context](kj::Array<MoveOutcome> moves) mutable {
      fillMoves(context.getResults().initMoves(static_cast<unsigned>(moves.size())), moves);
    });
  }
  return d.peer(address)
      .then([drained = p.getDrained(), all = p.getAll(), limit = p.getTimeLimitMs()](rpc::Node::Client node) {
        auto req = node.drainRequest();
        req.setDrained(drained);
        req.setAll(all);
        req.setTimeLimitMs(limit);
        return req.send();
      })
      .then([context](capnp::Response<rpc::Node::DrainResults> r) mutable {
        context.getResults().setMoves(r.getMoves());
      });
}

namespace {

struct OwnerWatch {
  OwnLoadMeter meter;
  kj::Vector<LoadSample> samples;
  double lastRound = -1e9;
};

kj::Promise<void> ownerLoop(Daemon& d, OwnerWatch& w) {
  const auto& p = d.config().policy.ownerReturns;
  return d.io().provider->getTimer().afterDelay(static_cast<uint64_t>(p.sampleSeconds * 1000) * kj::MILLISECONDS)
      .then([&d, &w, &p]() {
        double now = monotonicSeconds();
        KJ_IF_MAYBE(cpus, w.meter.sample(now)) {
          // Only what ownerIsBack can look at: the sustain time and a few samples before it.
          kj::Vector<LoadSample> kept;
          for (auto& s : w.samples) {
            if (s.at >= now - p.sustainSeconds - 3 * p.sampleSeconds) kept.add(s);
          }
          kept.add(LoadSample{now, *cpus});
          w.samples = kj::mv(kept);
          auto& a = d.admission();
          a.ownCpus = *cpus;
          bool back = ownerIsBack(w.samples, p, now);
          if (back != a.ownerBack) {
            d.log(back ? kj::str("owner returns: this host's own processes used ", p.threshold, " CPUs or more for ",
                                 p.sustainSeconds, " s (now ", *cpus, "): taking no new jobs")
                       : kj::str("owner returns: own load below ", p.threshold, " CPUs again (", *cpus,
                                 "): taking jobs again"));
          }
          a.ownerBack = back;
          bool guests = false;
          for (auto& e : d.hostedJobs()) guests = guests || (e.value->running && !e.value->leaving);
          // A job that could not leave is tried again after another sustain time, not
          // at every sample.
          if (back && guests && !a.evacuating && now - w.lastRound >= p.sustainSeconds) {
            w.lastRound = now;
            uint64_t limit = static_cast<uint64_t>(d.config().policy.drain.timeLimitSeconds * 1000);
            // (A failure to start is the task's, logged; never the sampling loop's.)
            d.tasks().add(kj::evalNow([&d, limit]() { return evacuate(d, false, limit, "owner returns").ignoreResult(); }));
          }
        }
        return ownerLoop(d, w);
      });
}

}  // namespace

kj::Promise<void> watchOwner(Daemon& d) {
  if (!d.config().policy.ownerReturns.enabled) return kj::NEVER_DONE;
  auto w = kj::heap<OwnerWatch>();
  w->meter.sample(monotonicSeconds());
  auto& ref = *w;
  return ownerLoop(d, ref).attach(kj::mv(w));
}

}  // namespace mig::shadow
