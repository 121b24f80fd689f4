// See balance.h. A decision looks at every job that runs here and wants CPU (runnable
// in at least half the window's samples) against every other host that accepts jobs;
// of the moves the rule allows, the one with the largest expected gain over its cost
// is made, once its destination has promised it a slot (Node.claimSlot: the
// coordination between hosts, docs/policies.md), else the next one; then nothing more
// until a whole window has been measured after it (both hosts' counts include it then).
#include "shadow/balance.h"

#include "shadow/drain.h"
#include "shadow/error.h"

#include <capnp/message.h>
#include <kj/debug.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <ctime>
#include <unistd.h>

namespace mig::shadow {
namespace {

double monotonicSeconds() { return RunnableMeter::clock(); }

double share(double runnable, double cpus) { return cpuShare(runnable, cpus); }

kj::String fmt(double v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f", v);
  return kj::str(buf);
}

kj::String fmt2(double v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.2f", v);
  return kj::str(buf);
}

uint64_t residentBytes(pid_t pid) {
  FILE* f = fopen(kj::str("/proc/", pid, "/statm").cStr(), "re");
  if (f == nullptr) return 0;
  unsigned long long size = 0, rss = 0;
  if (fscanf(f, "%llu %llu", &size, &rss) != 2) rss = 0;
  fclose(f);
  return rss * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// The other hosts that answer, as a decision sees them.
kj::Promise<kj::Array<Destination>> otherHosts(Daemon& d) {
  return destinations(d).then([&d](kj::Array<Destination> nodes) {
    kj::Vector<Destination> out;
    for (auto& n : nodes) {
      // By address: shadowds on loopback share a host name.
      if (n.reachable && n.address != d.address() && n.cpus > 0) out.add(kj::mv(n));
    }
    return out.releaseAsArray();
  });
}

// The accepting hosts, where a job that comes gets the most CPU first (then fewest jobs,
// then name).
kj::Vector<size_t> byShare(kj::ArrayPtr<const Destination> hosts) {
  kj::Vector<size_t> out;
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (hosts[i].accepting) out.add(i);
  }
  std::sort(out.begin(), out.end(), [&hosts](size_t a, size_t b) {
    auto& x = hosts[a];
    auto& y = hosts[b];
    double sx = share(x.runnable + 1, x.cpus), sy = share(y.runnable + 1, y.cpus);
    if (sx != sy) return sx > sy;
    if (x.jobs != y.jobs) return x.jobs < y.jobs;
    return strcmp(x.name.cStr(), y.name.cStr()) < 0;
  });
  return out;
}

// How long a host has to answer a request for a slot (as for Node.info in Local.nodes).
constexpr uint64_t kClaimTimeoutMs = 3000;

// A destination's answer to a request for a slot.
struct Slot {
  bool granted = false;
  kj::String reason;                        // refused: why, one line
  kj::Maybe<rpc::SlotClaim::Client> claim;  // granted: held until settled
};

kj::Promise<Slot> claimSlot(Daemon& d, kj::StringPtr name, double srcShare, double minShareGain) {
  auto asked = d.peer(name)
                   .then([srcShare, minShareGain](rpc::Node::Client node) {
                     auto req = node.claimSlotRequest();
                     req.setSrcShare(srcShare);
                     req.setMinShareGain(minShareGain);
                     return req.send();
                   })
                   .then([](capnp::Response<rpc::Node::ClaimSlotResults> r) {
                     Slot s;
                     s.granted = r.getGranted();
                     s.reason = kj::str(r.getReason());
                     if (s.granted) s.claim = r.getClaim();
                     return s;
                   })
                   .catch_([](kj::Exception&& e) {
                     Slot s;
                     s.reason = kj::str("it could not be asked for a slot: ", oneLine(e.getDescription()));
                     return s;
                   });
  auto limit = d.io().provider->getTimer().afterDelay(kClaimTimeoutMs * kj::MILLISECONDS).then([]() {
    Slot s;
    s.reason = kj::str("it did not answer a request for a slot within ", kClaimTimeoutMs / 1000, " s");
    return s;
  });
  return asked.exclusiveJoin(kj::mv(limit));
}

// Tells the destination how the move it promised a slot to ended (arrived: the slot
// counts until its load count shows the job; else it is free again). Its answer is not
// waited for: dropping the claim frees an unsettled slot anyway.
void settle(Daemon& d, Slot& slot, bool arrived) {
  KJ_IF_MAYBE(c, slot.claim) {
    auto req = c->settleRequest();
    req.setArrived(arrived);
    auto limit = d.io().provider->getTimer().afterDelay(kClaimTimeoutMs * kj::MILLISECONDS);
    d.tasks().add(req.send().ignoreResult().exclusiveJoin(kj::mv(limit)).catch_([](kj::Exception&&) {})
                      .attach(kj::mv(*c)));
    slot.claim = nullptr;
  }
}

kj::String rateText(Daemon& d, kj::StringPtr name, double defaultRate) {
  auto address = d.resolveNode(name);
  double r = d.transferRates().rate(address);
  if (r > 0) return kj::str(fmt(r / 1e6), " MB/s measured");
  return kj::str(fmt(defaultRate / 1e6), " MB/s assumed");
}

// A job that runs here.
struct Candidate {
  uint64_t hostedId = 0;   // migrated in; 0: at home here
  pid_t pid = 0;           // here
  pid_t vpid = 0;          // at home
  kj::String home;         // its name
  kj::String command;
  double ranSeconds = 0;
  double sinceMoveSeconds = 0;
  double bytes = 0;
};

struct BalanceState {
  kj::HashMap<kj::String, kj::String> saidWhy;     // "home/vpid" -> the last reason logged
  double lastMoveAt = -1e18;
  // The decision under way, kept until the next one replaces it: a promise must not be
  // destroyed from its own continuation (KJ frees the node that is running it).
  kj::Maybe<kj::Promise<void>> deciding;
  bool decidingNow = false;
};

kj::Promise<kj::Vector<Candidate>> candidates(Daemon& d) {
  kj::Vector<Candidate> out;
  double now = nowSeconds();
  for (auto& e : d.hostedJobs()) {
    HostedJob& j = *e.value;
    if (!j.running || j.leaving || j.realPid <= 0) continue;
    Candidate c;
    c.hostedId = j.id;
    c.pid = j.realPid;
    c.vpid = j.vpid;
    c.home = d.nodeName(j.home);
    c.command = kj::str(j.command);
    // What it ran before it came is its home's to know: the time here is a lower bound.
    c.ranSeconds = c.sinceMoveSeconds = now - j.startedAt;
    c.bytes = static_cast<double>(residentBytes(j.realPid));
    out.add(kj::mv(c));
  }
  // Jobs at home that run here: what `migctl list` shows as such.
  return jobsAtHome(d).then([&d, out = kj::mv(out)](kj::Array<JobAtHome> jobs) mutable {
    for (auto& j : jobs) {
      if (j.location != d.address()) continue;
      Candidate c;
      c.pid = c.vpid = j.vpid;
      c.home = d.nodeName(d.address());
      c.command = kj::mv(j.command);
      c.ranSeconds = j.ageSeconds;
      c.sinceMoveSeconds = 1e18;  // it never left; a job back home is a hosted one above
      c.bytes = static_cast<double>(residentBytes(c.pid));
      out.add(kj::mv(c));
    }
    return kj::mv(out);
  });
}

// Logs why a job stays, once per reason (again when it changes or after the host was
// not busy). `reason` says which (without the figures, which change at every sample).
void sayStays(Daemon& d, BalanceState& s, const Candidate& c, kj::StringPtr reason, kj::StringPtr why,
              kj::StringPtr figures) {
  auto key = kj::str(c.home, "/", c.vpid);
  bool same = false;
  KJ_IF_MAYBE(said, s.saidWhy.find(key)) { same = *said == reason; }
  if (same) return;
  d.log(kj::str("balance: PID ", c.vpid, " of ", c.home, " (", c.command, ") stays here: ", why, " (", figures, ")"));
  s.saidWhy.upsert(kj::mv(key), kj::str(reason), [](kj::String& old, kj::String&& v) { old = kj::mv(v); });
}

// One decision: what it saw, and the moves the rule allows, best first.
struct Decision {
  kj::Array<Destination> hosts;
  kj::Vector<Candidate> jobs;
  struct Option {
    size_t job;
    size_t host;
    BalanceDecision decision;
  };
  kj::Vector<Option> options;
  kj::Vector<kj::String> refusals;  // per job: the hosts that refused it a slot, and why
  kj::Vector<kj::String> refusers;  // per job: just their names
  double here = 0;
  double cpus = 0;
};

kj::Promise<void> moveOption(Daemon& d, BalanceState& s, Decision& dec, size_t i, Slot slot) {
  auto& opt = dec.options[i];
  auto& c = dec.jobs[opt.job];
  auto& o = dec.hosts[opt.host];
  const auto& p = d.config().policy.balance;
  s.lastMoveAt = monotonicSeconds();
  auto why = kj::str("gain ", fmt(opt.decision.gainSeconds), " s > cost ", fmt(opt.decision.costSeconds), " s at ",
                     rateText(d, o.name, p.defaultBytesPerSecond), "; here ", fmt(dec.here), " runnable on ",
                     fmt(dec.cpus), " CPUs, ", o.name, " ", fmt(o.runnable), " on ", fmt(o.cpus), ", a slot promised");
  double askedAt = nowSeconds();
  auto to = kj::str(o.name);
  auto held = kj::heap<Slot>(kj::mv(slot));
  auto& slotRef = *held;
  return moveJob(d, c.hostedId, c.pid, to)
      .then([&d, &s, &c, &slotRef, to = kj::str(to), why = kj::str(why), askedAt](HopResult r) mutable {
        settle(d, slotRef, true);
        d.log(kj::str("balance: PID ", c.vpid, " of ", c.home, " (", c.command, ") moved to ", to, ", frozen ",
                      fmt(r.freezeMs), " ms (", why, ")"));
        s.saidWhy.erase(kj::str(c.home, "/", c.vpid));
        if (c.hostedId != 0) {  // (a job at home went through Local.migrate, which keeps its entry)
          Move m;
          m.time = askedAt;
          m.pid = c.vpid;
          m.jobId = c.hostedId;
          m.from = d.nodeName(d.address());
          m.to = kj::str(to);
          m.ok = true;
          m.freezeMs = r.freezeMs;
          m.command = kj::str(c.command);
          m.error = kj::str("");
          d.moves().add(kj::mv(m));
        }
      }, [&d, &c, &slotRef, to = kj::str(to)](kj::Exception&& e) {
        settle(d, slotRef, false);
        d.log(kj::str("balance: PID ", c.vpid, " of ", c.home, " could not move to ", to, ": ",
                      oneLine(e.getDescription())));
      })
      .attach(kj::mv(held));
}

// Asks the destination of option i for a slot; moves the job if it is promised one,
// else goes on with the next option. None left: the jobs refused everywhere say so.
kj::Promise<void> tryOption(Daemon& d, BalanceState& s, Decision& dec, size_t i) {
  if (i >= dec.options.size()) {
    for (size_t j = 0; j < dec.jobs.size(); ++j) {
      if (dec.refusals[j].size() == 0) continue;
      auto& c = dec.jobs[j];
      sayStays(d, s, c, kj::str("no slot: ", dec.refusers[j]),
               kj::str("no host it would gain on promised it a slot: ", dec.refusals[j]),
               kj::str("here ", fmt(dec.here), " runnable on ", fmt(dec.cpus), " CPUs; ran ", fmt(c.ranSeconds), " s"));
    }
    return kj::READY_NOW;
  }
  auto& opt = dec.options[i];
  auto& o = dec.hosts[opt.host];
  const auto& p = d.config().policy.balance;
  // The job's share here, as the rule counts it (shouldBalance).
  double srcShare = share(std::max(dec.here, 1.0), dec.cpus);
  return claimSlot(d, o.name, srcShare, p.minShareGain).then([&d, &s, &dec, i](Slot slot) mutable -> kj::Promise<void> {
    auto& opt = dec.options[i];
    if (slot.granted) return moveOption(d, s, dec, i, kj::mv(slot));
    auto& r = dec.refusals[opt.job];
    r = kj::str(r, r.size() > 0 ? "; " : "", dec.hosts[opt.host].name, ": ", slot.reason);
    auto& names = dec.refusers[opt.job];
    names = kj::str(names, " ", dec.hosts[opt.host].name);
    return tryOption(d, s, dec, i + 1);
  });
}

kj::Promise<void> decide(Daemon& d, BalanceState& s) {
  return otherHosts(d).then([&d, &s](kj::Array<Destination> hosts) {
    return candidates(d).then([&d, &s, hosts = kj::mv(hosts)](kj::Vector<Candidate> jobs) mutable -> kj::Promise<void> {
      const auto& p = d.config().policy.balance;
      auto& meter = d.runnable();
      auto dec = kj::heap<Decision>();
      dec->here = meter.average();
      dec->cpus = d.cpus();
      dec->hosts = kj::mv(hosts);
      dec->jobs = kj::mv(jobs);
      auto& hostsRef = dec->hosts;
      auto ranked = byShare(hostsRef);
      for (size_t i = 0; i < dec->jobs.size(); ++i) {
        dec->refusals.add(kj::str(""));
        dec->refusers.add(kj::str(""));
        auto& c = dec->jobs[i];
        if (meter.fractionRunning(c.pid) < 0.5) continue;  // it does not want CPU
        kj::Maybe<Decision::Option> stay;
        bool goes = false;
        for (size_t h : ranked) {
          BalanceInput in;
          in.srcLoad = dec->here;
          in.srcCpus = dec->cpus;
          in.dstLoad = hostsRef[h].runnable;
          in.dstCpus = hostsRef[h].cpus;
          in.imageBytes = c.bytes;
          in.ranSeconds = c.ranSeconds;
          in.sinceMoveSeconds = c.sinceMoveSeconds;
          // Learned from every image this shadowd sent there (Daemon::runSender).
          in.bytesPerSecond = d.transferRates().rate(d.resolveNode(hostsRef[h].name));
          auto decision = shouldBalance(in, p);
          if (decision.move) {
            dec->options.add(Decision::Option{i, h, decision});
            goes = true;
          } else if (stay == nullptr) {
            stay = Decision::Option{i, h, decision};  // against the idlest host: the reason worth telling
          }
        }
        if (goes) continue;
        KJ_IF_MAYBE(st, stay) {
          auto& o = hostsRef[st->host];
          sayStays(d, s, c, st->decision.why, st->decision.why,
                   kj::str("here ", fmt(dec->here), " runnable on ", fmt(dec->cpus), " CPUs, ", o.name, " ",
                           fmt(o.runnable), " on ", fmt(o.cpus), "; ran ", fmt(c.ranSeconds), " s, last move ",
                           c.sinceMoveSeconds >= 1e17 ? kj::str("never") : kj::str(fmt(c.sinceMoveSeconds), " s ago"),
                           ", move cost ", fmt(st->decision.costSeconds), " s at ",
                           rateText(d, o.name, p.defaultBytesPerSecond)));
        }
      }
      if (dec->options.size() == 0) return kj::READY_NOW;
      std::stable_sort(dec->options.begin(), dec->options.end(), [](const Decision::Option& x, const Decision::Option& y) {
        return x.decision.gainSeconds - x.decision.costSeconds > y.decision.gainSeconds - y.decision.costSeconds;
      });
      auto& ref = *dec;
      return tryOption(d, s, ref, 0).attach(kj::mv(dec));
    });
  }).catch_([&d](kj::Exception&& e) {
    d.log(kj::str("balance: no decision this time: ", oneLine(e.getDescription())));
  });
}

kj::Promise<void> balanceLoop(Daemon& d, BalanceState& s) {
  const auto& p = d.config().policy.balance;
  return d.io().provider->getTimer().afterDelay(static_cast<uint64_t>(p.sampleSeconds * 1000) * kj::MILLISECONDS)
      .then([&d, &s, &p]() {
        double now = monotonicSeconds();
        auto& meter = d.runnable();
        // Without balance, only while someone reads the count (RunnableMeter::wanted).
        if (p.enabled || meter.wanted(now)) meter.sample(now);
        bool idle = !s.decidingNow;
        // A full window measured (since shadowd started, and since the last move).
        bool measured = meter.coveredSeconds() >= p.windowSeconds - p.sampleSeconds - 1e-9 &&
                        now - s.lastMoveAt >= p.windowSeconds;
        // Only a busy host sends jobs away: one where a job gets less than a whole CPU by
        // more than the smallest gain worth a move.
        bool busy = 1 - share(meter.average(), d.cpus()) >= p.minShareGain;
        // KJ 0.9: clear() of an empty HashMap passes memset a null pointer (UBSan).
        if (!busy && s.saidWhy.size() > 0) s.saidWhy.clear();
        if (p.enabled && idle && measured && busy && !d.admission().evacuating) {
          s.decidingNow = true;
          s.deciding = decide(d, s).then([&s]() { s.decidingNow = false; }).eagerlyEvaluate(nullptr);
        }
        return balanceLoop(d, s);
      });
}

// Tries the hosts in `better` (best first) for the job until one promises it a slot
// and takes it.
kj::Promise<void> tryPlace(Daemon& d, pid_t pid, double homeShare, rpc::Local::PlaceResults::Builder results,
                           kj::Array<kj::String> better, size_t i, kj::String errors) {
  if (i >= better.size()) {
    auto why = kj::str("every host that would give it more CPU refused it: ", errors);
    d.log(kj::str("placement: PID ", pid, " stays here: ", why));
    results.setMoved(false);
    results.setReason(why);
    return kj::READY_NOW;
  }
  auto to = kj::str(better[i]);
  auto next = [&d, pid, homeShare, results, better = kj::mv(better), i, to = kj::str(to),
               errors = kj::mv(errors)](kj::StringPtr why) mutable -> kj::Promise<void> {
    auto all = kj::str(errors, errors.size() > 0 ? "; " : "", "to ", to, ": ", why);
    return tryPlace(d, pid, homeShare, results, kj::mv(better), i + 1, kj::mv(all));
  };
  return claimSlot(d, to, homeShare, d.config().policy.balance.minShareGain)
      .then([&d, pid, results, to = kj::mv(to), next = kj::mv(next)](Slot got) mutable -> kj::Promise<void> {
        if (!got.granted) return next(kj::str("no slot promised: ", got.reason));
        auto slot = kj::heap<Slot>(kj::mv(got));
        auto& slotRef = *slot;
        return moveJob(d, 0, pid, to).then(
            [&d, pid, results, to = kj::str(to), &slotRef](HopResult r) mutable -> kj::Promise<void> {
              settle(d, slotRef, true);
              d.log(kj::str("placement: PID ", pid, " moved to ", to, ", frozen ", fmt(r.freezeMs), " ms"));
              results.setMoved(true);
              results.setDestination(to);
              results.setFreezeMs(r.freezeMs);
              return kj::READY_NOW;
            },
            [&d, &slotRef, next = kj::mv(next)](kj::Exception&& e) mutable -> kj::Promise<void> {
              settle(d, slotRef, false);
              return next(oneLine(e.getDescription()));
            }).attach(kj::mv(slot));
      });
}

// A slot this host promised to a job another host's policy sends here (Node.claimSlot).
class SlotClaimImpl final : public rpc::SlotClaim::Server {
 public:
  SlotClaimImpl(kj::Own<SlotClaims> claims, uint64_t id) : claims_(kj::mv(claims)), id_(id) {}
  ~SlotClaimImpl() noexcept(false) {
    if (!settled_) claims_->release(id_);  // the sender went away without saying
  }

  kj::Promise<void> settle(SettleContext context) override {
    if (!settled_) {
      if (context.getParams().getArrived()) {
        claims_->arrived(id_, monotonicSeconds());
      } else {
        claims_->release(id_);
      }
      settled_ = true;
    }
    return kj::READY_NOW;
  }

 private:
  kj::Own<SlotClaims> claims_;
  uint64_t id_;
  bool settled_ = false;
};

}  // namespace

kj::Promise<void> watchBalance(Daemon& d) {
  auto s = kj::heap<BalanceState>();
  if (d.config().policy.balance.enabled) d.runnable().sample(monotonicSeconds());
  auto& ref = *s;
  return balanceLoop(d, ref).attach(kj::mv(s));
}

kj::Promise<void> localPlace(Daemon& d, capnp::CallContext<rpc::Local::PlaceParams, rpc::Local::PlaceResults> context) {
  pid_t pid = context.getParams().getPid();
  require(pid > 0 && kill(pid, 0) == 0, kj::str("no process ", pid, " on this host"));
  return otherHosts(d).then([&d, pid, context](kj::Array<Destination> hosts) mutable -> kj::Promise<void> {
    const auto& p = d.config().policy.balance;
    double cpus = d.cpus();
    // What it gets here: the host's load besides it, and itself.
    d.runnable().averageForReader(monotonicSeconds());  // (a sample now if none is fresh)
    double here = d.runnable().averageWithout(pid);
    double homeShare = share(here + 1, cpus);
    auto ranked = byShare(hosts);
    kj::Vector<kj::String> better;  // the hosts that beat this one, best first
    for (size_t h : ranked) {
      if (share(hosts[h].runnable + 1, hosts[h].cpus) - homeShare >= p.minShareGain) better.add(kj::str(hosts[h].name));
    }
    auto results = context.getResults();
    if (better.size() == 0) {
      auto why = ranked.size() == 0
          ? kj::str("no other host accepts jobs now (migctl nodes)")
          : kj::str("no host would give it more CPU than this one (here ", fmt(here), " runnable besides it on ",
                    fmt(cpus), " CPUs; the idlest other, ", hosts[ranked[0]].name, ", ", fmt(hosts[ranked[0]].runnable),
                    " on ", fmt(hosts[ranked[0]].cpus), ")");
      d.log(kj::str("placement: PID ", pid, " stays here: ", why));
      results.setMoved(false);
      results.setReason(why);
      return kj::READY_NOW;
    }
    return tryPlace(d, pid, homeShare, results, better.releaseAsArray(), 0, kj::str(""));
  });
}

kj::Promise<void> nodeClaimSlot(Daemon& d,
                                capnp::CallContext<rpc::Node::ClaimSlotParams, rpc::Node::ClaimSlotResults> context) {
  auto p = context.getParams();
  auto results = context.getResults();
  KJ_IF_MAYBE(why, admissionRefusal(d)) {
    results.setGranted(false);
    results.setReason(*why);
    return kj::READY_NOW;
  }
  double now = monotonicSeconds();
  ClaimInput in;
  in.runnable = d.runnable().averageForReader(now);
  in.cpus = d.cpus();
  const auto& b = d.config().policy.balance;
  in.promised = d.slotClaims().promised(now, b.windowSeconds, 2 * b.sampleSeconds);
  in.srcShare = p.getSrcShare();
  in.minShareGain = p.getMinShareGain();
  auto decision = decideClaim(in);
  auto figures = kj::str(fmt(in.runnable), " runnable + ", fmt(in.promised), " promised on ", fmt(in.cpus),
                         " CPUs: the job would get ", fmt2(decision.share), " CPU here, ", fmt2(in.srcShare),
                         " where it runs");
  if (!decision.grant) {
    results.setGranted(false);
    results.setReason(kj::str(decision.why, " (", figures, ")"));
    d.log(kj::str("coordination: no slot for a job another host would send here: ", decision.why, " (", figures, ")"));
    return kj::READY_NOW;
  }
  uint64_t id = d.slotClaims().grant();
  results.setGranted(true);
  results.setClaim(kj::heap<SlotClaimImpl>(kj::addRef(d.slotClaims()), id));
  d.log(kj::str("coordination: a slot promised to a job another host sends here (", figures, ")"));
  return kj::READY_NOW;
}

void learnTransferRate(Daemon& d, kj::StringPtr to, double bytes, double seconds) {
  auto& rates = d.transferRates();
  rates.learn(to, bytes, seconds);
  double r = rates.rate(to);
  if (r <= 0) return;
  d.log(kj::str("transfer rate to ", d.nodeName(to), ": ", fmt(r / 1e6), " MB/s over the last ", rates.samples(to),
                " image(s) sent there (this one ", fmt(bytes / 1e6), " MB in ", fmt2(seconds), " s)"));
}

}  // namespace mig::shadow
