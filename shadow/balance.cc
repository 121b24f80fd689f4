// See balance.h. A decision looks at every job that runs here and wants CPU (runnable
// in at least half the window's samples) against every other host that accepts jobs;
// the move with the largest expected gain over its cost is made, then nothing more
// until a whole window has been measured after it (both hosts' counts include it then).
#include "shadow/balance.h"

#include "shadow/drain.h"
#include "shadow/error.h"
#include "shadow/services.h"

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

double share(double runnable, double cpus) { return runnable <= cpus ? 1 : cpus / runnable; }

kj::String fmt(double v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f", v);
  return kj::str(buf);
}

// A host's name in the nodes file, or its address when it has none there.
kj::String nameOf(Daemon& d, kj::StringPtr address) {
  for (auto& e : d.config().nodes) {
    if (e.value == address) return kj::str(e.key);
  }
  return kj::str(address);
}

uint64_t residentBytes(pid_t pid) {
  FILE* f = fopen(kj::str("/proc/", pid, "/statm").cStr(), "re");
  if (f == nullptr) return 0;
  unsigned long long size = 0, rss = 0;
  if (fscanf(f, "%llu %llu", &size, &rss) != 2) rss = 0;
  fclose(f);
  return rss * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// Another host as a decision sees it.
struct Other {
  kj::String name;
  bool accepting = false;
  double runnable = 0;
  double cpus = 0;
  uint32_t jobs = 0;
};

kj::Promise<kj::Array<Other>> otherHosts(Daemon& d) {
  rpc::Local::Client local = makeLocal(d);
  return local.nodesRequest().send().then([&d](capnp::Response<rpc::Local::NodesResults> r) {
    kj::Vector<Other> out;
    for (auto n : r.getNodes()) {
      if (!n.getReachable()) continue;
      auto info = n.getInfo();
      // By address: shadowds on loopback share a host name.
      if (info.getAddress() == d.address() || info.getCpus() <= 0) continue;
      Other o;
      o.name = kj::str(n.getName());
      o.accepting = !info.getDrained() && !info.getOwnerBack();
      o.runnable = info.getRunnable();
      o.cpus = info.getCpus();
      o.jobs = info.getJobs();
      out.add(kj::mv(o));
    }
    return out.releaseAsArray();
  }).attach(kj::mv(local));
}

// The accepting hosts, where a job that comes gets the most CPU first (then fewest jobs,
// then name).
kj::Vector<size_t> byShare(kj::ArrayPtr<const Other> hosts) {
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
  kj::HashMap<kj::String, double> bytesPerSecond;  // measured per destination (name)
  kj::HashMap<kj::String, kj::String> saidWhy;     // "home/vpid" -> the last reason logged
  double lastMoveAt = -1e18;
  kj::Maybe<kj::Promise<void>> deciding;
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
    c.home = nameOf(d, j.home);
    c.command = kj::str(j.command);
    // What it ran before it came is its home's to know: the time here is a lower bound.
    c.ranSeconds = c.sinceMoveSeconds = now - j.startedAt;
    c.bytes = static_cast<double>(residentBytes(j.realPid));
    out.add(kj::mv(c));
  }
  // Jobs at home that run here: what `migctl list` shows as such.
  rpc::Local::Client local = makeLocal(d);
  return local.listRequest().send().then([&d, out = kj::mv(out)](capnp::Response<rpc::Local::ListResults> r) mutable {
    for (auto j : r.getJobs()) {
      if (j.getState() != "running" || j.getHome() != d.address() || j.getLocation() != d.address()) continue;
      Candidate c;
      c.pid = c.vpid = j.getVpid();
      c.home = nameOf(d, d.address());
      c.command = kj::str(j.getCommand());
      c.ranSeconds = j.getAgeSeconds();
      c.sinceMoveSeconds = 1e18;  // it never left; a job back home is a hosted one above
      c.bytes = static_cast<double>(residentBytes(c.pid));
      out.add(kj::mv(c));
    }
    return kj::mv(out);
  }).attach(kj::mv(local));
}

kj::Promise<void> decide(Daemon& d, BalanceState& s) {
  return otherHosts(d).then([&d, &s](kj::Array<Other> hosts) {
    return candidates(d).then([&d, &s, hosts = kj::mv(hosts)](kj::Vector<Candidate> jobs) mutable -> kj::Promise<void> {
      const auto& p = d.config().policy.balance;
      auto& meter = d.runnable();
      double here = meter.average();
      double cpus = d.cpus();
      auto ranked = byShare(hosts);
      struct Best {
        size_t job = 0;
        size_t host = 0;
        BalanceDecision decision;
      };
      kj::Maybe<Best> best;
      for (size_t i = 0; i < jobs.size(); ++i) {
        auto& c = jobs[i];
        if (meter.fractionRunning(c.pid) < 0.5) continue;  // it does not want CPU
        kj::Maybe<Best> stay;
        kj::Maybe<Best> go;
        for (size_t h : ranked) {
          BalanceInput in;
          in.srcLoad = here;
          in.srcCpus = cpus;
          in.dstLoad = hosts[h].runnable;
          in.dstCpus = hosts[h].cpus;
          in.imageBytes = c.bytes;
          in.ranSeconds = c.ranSeconds;
          in.sinceMoveSeconds = c.sinceMoveSeconds;
          in.bytesPerSecond = 0;
          KJ_IF_MAYBE(rate, s.bytesPerSecond.find(hosts[h].name)) { in.bytesPerSecond = *rate; }
          auto dec = shouldBalance(in, p);
          if (dec.move) {
            bool better = true;
            KJ_IF_MAYBE(g, go) { better = dec.gainSeconds - dec.costSeconds > g->decision.gainSeconds - g->decision.costSeconds; }
            if (better) go = Best{i, h, dec};
          } else if (stay == nullptr) {
            stay = Best{i, h, dec};  // against the idlest host: the reason worth telling
          }
        }
        auto key = kj::str(c.home, "/", c.vpid);
        KJ_IF_MAYBE(g, go) {
          bool better = true;
          KJ_IF_MAYBE(b, best) { better = g->decision.gainSeconds - g->decision.costSeconds > b->decision.gainSeconds - b->decision.costSeconds; }
          if (better) best = *g;
        } else KJ_IF_MAYBE(st, stay) {
          auto& o = hosts[st->host];
          auto why = kj::str(st->decision.why);
          bool same = false;
          KJ_IF_MAYBE(said, s.saidWhy.find(key)) { same = *said == why; }
          if (!same) {
            d.log(kj::str("balance: PID ", c.vpid, " of ", c.home, " (", c.command, ") stays here: ", why, " (here ",
                          fmt(here), " runnable on ", fmt(cpus), " CPUs, ", o.name, " ", fmt(o.runnable), " on ",
                          fmt(o.cpus), "; ran ", fmt(c.ranSeconds), " s, last move ",
                          c.sinceMoveSeconds >= 1e17 ? kj::str("never") : kj::str(fmt(c.sinceMoveSeconds), " s ago"),
                          ", move cost ", fmt(st->decision.costSeconds), " s)"));
            s.saidWhy.upsert(kj::mv(key), kj::mv(why), [](kj::String& old, kj::String&& v) { old = kj::mv(v); });
          }
        }
      }
      Best b;
      KJ_IF_MAYBE(found, best) { b = *found; } else { return kj::READY_NOW; }
      auto& c = jobs[b.job];
      auto& o = hosts[b.host];
      s.lastMoveAt = monotonicSeconds();
      auto why = kj::str("gain ", fmt(b.decision.gainSeconds), " s > cost ", fmt(b.decision.costSeconds), " s; here ",
                         fmt(here), " runnable on ", fmt(cpus), " CPUs, ", o.name, " ", fmt(o.runnable), " on ",
                         fmt(o.cpus));
      double askedAt = nowSeconds();
      auto to = kj::str(o.name);
      return moveJob(d, c.hostedId, c.pid, to)
          .then([&d, &s, c = kj::mv(c), to = kj::str(to), why = kj::str(why), askedAt](HopResult r) mutable {
            if (r.transferMs > 0 && r.imageBytes > 0) {
              double rate = static_cast<double>(r.imageBytes) / (r.transferMs / 1000);
              s.bytesPerSecond.upsert(kj::str(to), rate, [](double& old, double v) { old = v; });
            }
            d.log(kj::str("balance: PID ", c.vpid, " of ", c.home, " (", c.command, ") moved to ", to, ", frozen ",
                          fmt(r.freezeMs), " ms (", why, ")"));
            s.saidWhy.erase(kj::str(c.home, "/", c.vpid));
            if (c.hostedId != 0) {  // (a job at home went through Local.migrate, which keeps its entry)
              Move m;
              m.time = askedAt;
              m.pid = c.vpid;
              m.jobId = c.hostedId;
              m.from = nameOf(d, d.address());
              m.to = kj::str(to);
              m.ok = true;
              m.freezeMs = r.freezeMs;
              m.command = kj::str(c.command);
              m.error = kj::str("");
              d.moves().add(kj::mv(m));
            }
          }, [&d, vpid = c.vpid, home = kj::str(c.home), to = kj::str(to)](kj::Exception&& e) {
            d.log(kj::str("balance: PID ", vpid, " of ", home, " could not move to ", to, ": ",
                          oneLine(e.getDescription())));
          });
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
        bool idle = s.deciding == nullptr;
        // A full window measured (since shadowd started, and since the last move).
        bool measured = meter.coveredSeconds() >= p.windowSeconds - p.sampleSeconds - 1e-9 &&
                        now - s.lastMoveAt >= p.windowSeconds;
        // Only a busy host sends jobs away: one where a job gets less than a whole CPU by
        // more than the smallest gain worth a move.
        bool busy = 1 - share(meter.average(), d.cpus()) >= p.minShareGain;
        // KJ 0.9: clear() of an empty HashMap passes memset a null pointer (UBSan).
        if (!busy && s.saidWhy.size() > 0) s.saidWhy.clear();
        if (p.enabled && idle && measured && busy && !d.admission().evacuating) {
          s.deciding = decide(d, s).then([&s]() { s.deciding = nullptr; }).eagerlyEvaluate(nullptr);
        }
        return balanceLoop(d, s);
      });
}

// Tries the hosts in `better` (best first) for the job until one takes it.
kj::Promise<void> tryPlace(Daemon& d, pid_t pid, rpc::Local::PlaceResults::Builder results,
                           kj::Array<kj::String> better, size_t i, kj::String errors) {
  if (i >= better.size()) {
    auto why = kj::str("every host that would give it more CPU refused it: ", errors);
    d.log(kj::str("placement: PID ", pid, " stays here: ", why));
    results.setMoved(false);
    results.setReason(why);
    return kj::READY_NOW;
  }
  auto to = kj::str(better[i]);
  auto hop = moveJob(d, 0, pid, to);
  return hop.then(
      [&d, pid, results, to = kj::str(to)](HopResult r) mutable -> kj::Promise<void> {
        d.log(kj::str("placement: PID ", pid, " moved to ", to, ", frozen ", fmt(r.freezeMs), " ms"));
        results.setMoved(true);
        results.setDestination(to);
        results.setFreezeMs(r.freezeMs);
        return kj::READY_NOW;
      },
      [&d, pid, results, better = kj::mv(better), i, to = kj::str(to),
       errors = kj::mv(errors)](kj::Exception&& e) mutable -> kj::Promise<void> {
        auto all = kj::str(errors, errors.size() > 0 ? "; " : "", "to ", to, ": ", oneLine(e.getDescription()));
        return tryPlace(d, pid, results, kj::mv(better), i + 1, kj::mv(all));
      });
}

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
  return otherHosts(d).then([&d, pid, context](kj::Array<Other> hosts) mutable -> kj::Promise<void> {
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
    return tryPlace(d, pid, results, better.releaseAsArray(), 0, kj::str(""));
  });
}


}  // namespace mig::shadow
