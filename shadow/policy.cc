// See policy.h. The file is TOML, parsed by toml++ (Debian's libtomlplusplus); here
// only what its tables and keys mean and which values are allowed.
#include "shadow/policy.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

namespace mig::shadow {
namespace {

kj::String at(kj::StringPtr path, const toml::source_region& where, kj::StringPtr why) {
  return kj::str(path, ":", where.begin.line, ":", where.begin.column, ": ", why);
}

// One known key: its type and allowed range, and where its value goes.
struct Key {
  const char* name;
  double* number = nullptr;   // a number (integer or float) in [min, max]
  bool* flag = nullptr;       // a boolean
  double min = 0;
  double max = 0;
  bool minExclusive = false;  // > min rather than >= min
};

kj::Maybe<kj::String> readTable(const toml::table& table, kj::StringPtr tableName, kj::ArrayPtr<Key> keys,
                                kj::StringPtr path) {
  for (auto&& [k, node] : table) {
    Key* known = nullptr;
    for (auto& key : keys) {
      if (k.str() == key.name) known = &key;
    }
    auto full = kj::str(tableName, ".", std::string(k.str()).c_str());
    if (known == nullptr) {
      kj::Vector<kj::StringPtr> names;
      for (auto& key : keys) names.add(key.name);
      return at(path, k.source(), kj::str("unknown key '", full, "' (known in [", tableName, "]: ",
                                          kj::strArray(names, ", "), ")"));
    }
    if (known->flag != nullptr) {
      auto b = node.as_boolean();
      if (b == nullptr) return at(path, node.source(), kj::str("'", full, "' must be true or false"));
      *known->flag = b->get();
      continue;
    }
    double v;
    if (auto i = node.as_integer()) {
      v = static_cast<double>(i->get());
    } else if (auto f = node.as_floating_point()) {
      v = f->get();
    } else {
      return at(path, node.source(), kj::str("'", full, "' must be a number"));
    }
    bool low = known->minExclusive ? !(v > known->min) : !(v >= known->min);
    if (!std::isfinite(v) || low || v > known->max) {
      return at(path, node.source(),
                kj::str("'", full, "' = ", v, " is out of range: it must be ", known->minExclusive ? "above " : "at least ",
                        known->min, " and at most ", known->max));
    }
    *known->number = v;
  }
  return nullptr;
}

}  // namespace

kj::Maybe<kj::String> parsePolicy(kj::StringPtr text, kj::StringPtr path, PolicyConfig& out) {
  toml::table root;
  try {
    root = toml::parse(std::string_view(text.begin(), text.size()), std::string_view(path.begin(), path.size()));
  } catch (const toml::parse_error& e) {
    return at(path, e.source(), kj::str("not valid TOML: ", std::string(e.description()).c_str()));
  }
  auto& o = out.ownerReturns;
  Key ownerKeys[] = {
      {"enabled", nullptr, &o.enabled},
      {"threshold", &o.threshold, nullptr, 0, 4096, true},
      {"sustain_seconds", &o.sustainSeconds, nullptr, 0, 86400, true},
      {"sample_seconds", &o.sampleSeconds, nullptr, 0.1, 3600},
  };
  Key drainKeys[] = {
      {"time_limit_seconds", &out.drain.timeLimitSeconds, nullptr, 0, 86400, true},
  };
  auto& b = out.balance;
  Key balanceKeys[] = {
      {"enabled", nullptr, &b.enabled},
      {"cpus", &b.cpus, nullptr, 0, 4096},
      {"sample_seconds", &b.sampleSeconds, nullptr, 0.1, 3600},
      {"window_seconds", &b.windowSeconds, nullptr, 0.1, 86400},
      {"no_return_seconds", &b.noReturnSeconds, nullptr, 0, 86400 * 365},
      {"min_share_gain", &b.minShareGain, nullptr, 0, 1, true},
      {"age_multiple", &b.ageMultiple, nullptr, 0, 1e6},
      {"fixed_cost_seconds", &b.fixedCostSeconds, nullptr, 0, 3600},
      {"default_bytes_per_second", &b.defaultBytesPerSecond, nullptr, 1e3, 1e12},
  };
  for (auto&& [k, node] : root) {
    kj::StringPtr name = nullptr;
    kj::ArrayPtr<Key> keys;
    if (k.str() == "node_aliases") {
      auto table = node.as_table();
      if (table == nullptr) return at(path, node.source(), "'node_aliases' must be a table ([node_aliases])");
      for (auto&& [alias, target] : *table) {
        auto full = kj::str("node_aliases.", std::string(alias.str()).c_str());
        auto s = target.as_string();
        if (s == nullptr || s->get().empty()) {
          return at(path, target.source(), kj::str("'", full, "' must be a node's name from the nodes file, in quotes"));
        }
        NodeAlias a;
        a.alias = kj::str(std::string(alias.str()).c_str());
        a.node = kj::str(s->get().c_str());
        a.where = kj::str(path, ":", alias.source().begin.line, ":", alias.source().begin.column);
        out.nodeAliases.add(kj::mv(a));
      }
      continue;
    }
    if (k.str() == "owner_returns") {
      name = "owner_returns";
      keys = ownerKeys;
    } else if (k.str() == "drain") {
      name = "drain";
      keys = drainKeys;
    } else if (k.str() == "balance") {
      name = "balance";
      keys = balanceKeys;
    } else {
      return at(path, k.source(), kj::str("unknown table '", std::string(k.str()).c_str(),
                                          "' (known: [owner_returns], [drain], [balance], [node_aliases])"));
    }
    auto table = node.as_table();
    if (table == nullptr) return at(path, node.source(), kj::str("'", name, "' must be a table ([", name, "])"));
    KJ_IF_MAYBE(why, readTable(*table, name, keys, path)) { return kj::mv(*why); }
  }
  if (o.sampleSeconds > o.sustainSeconds) {
    return kj::str(path, ": owner_returns.sample_seconds (", o.sampleSeconds,
                   ") must not be longer than owner_returns.sustain_seconds (", o.sustainSeconds, ")");
  }
  if (b.sampleSeconds > b.windowSeconds) {
    return kj::str(path, ": balance.sample_seconds (", b.sampleSeconds,
                   ") must not be longer than balance.window_seconds (", b.windowSeconds, ")");
  }
  return nullptr;
}

kj::Maybe<kj::String> loadPolicy(kj::StringPtr path, PolicyConfig& out) {
  FILE* f = fopen(path.cStr(), "re");
  if (f == nullptr) return kj::str("cannot read the policy file ", path, ": ", strerror(errno));
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  bool bad = ferror(f);
  fclose(f);
  if (bad) return kj::str("cannot read the policy file ", path);
  return parsePolicy(kj::StringPtr(text.c_str(), text.size()), path, out);
}

bool ownerIsBack(kj::ArrayPtr<const LoadSample> samples, const OwnerReturnsParams& p, double now) {
  if (!p.enabled || samples.size() == 0) return false;
  const double gap = 2 * p.sampleSeconds;
  if (now - samples.back().at > p.sampleSeconds + 1e-9) return false;  // stale: not measuring
  size_t first = samples.size();  // the first sample of the busy stretch that ends now
  double start = 0;
  for (size_t i = samples.size(); i > 0; --i) {
    const LoadSample& s = samples[i - 1];
    bool joined = first == samples.size() || samples[first].at - s.at <= gap;
    if (!joined) break;  // shadowd was not measuring in between
    if (s.ownCpus < p.threshold) {
      if (first < samples.size()) start = s.at;  // busy since this quiet interval ended
      break;
    }
    first = i - 1;
    start = s.at - p.sampleSeconds;
  }
  if (first == samples.size()) return false;  // the newest sample is not busy
  return now - start >= p.sustainSeconds - 1e-9;
}

kj::Vector<size_t> rankDestinations(kj::ArrayPtr<const Destination> hosts, kj::StringPtr self) {
  kj::Vector<size_t> out;
  for (size_t i = 0; i < hosts.size(); ++i) {
    auto& h = hosts[i];
    if (h.reachable && h.accepting && h.address != self) out.add(i);
  }
  std::sort(out.begin(), out.end(), [&hosts](size_t a, size_t b) {
    auto& x = hosts[a];
    auto& y = hosts[b];
    double lx = x.load1 + x.sentHere, ly = y.load1 + y.sentHere;
    if (lx != ly) return lx < ly;
    if (x.jobs != y.jobs) return x.jobs < y.jobs;
    return strcmp(x.name.cStr(), y.name.cStr()) < 0;
  });
  return out;
}

double cpuShare(double runnable, double cpus) {
  if (runnable <= cpus) return 1;
  return cpus / runnable;
}

BalanceDecision shouldBalance(const BalanceInput& in, const BalanceParams& p) {
  BalanceDecision d;
  double rate = in.bytesPerSecond > 0 ? in.bytesPerSecond : p.defaultBytesPerSecond;
  d.costSeconds = p.fixedCostSeconds + in.imageBytes / rate;
  double shareGain = cpuShare(in.dstLoad + 1, in.dstCpus) - cpuShare(std::max(in.srcLoad, 1.0), in.srcCpus);
  d.gainSeconds = shareGain * in.ranSeconds;
  if (in.sinceMoveSeconds < p.noReturnSeconds) {
    d.why = "it moved less than the no-return time ago";
  } else if (shareGain < p.minShareGain) {
    d.why = "the other host would not give it enough more CPU";
  } else if (in.ranSeconds < p.ageMultiple * d.costSeconds) {
    d.why = "it has not run long enough for what the move costs";
  } else if (d.gainSeconds <= d.costSeconds) {
    d.why = "the expected gain does not beat the cost";
  } else {
    d.move = true;
    d.why = "the expected gain beats the cost";
  }
  return d;
}

kj::Maybe<kj::StringPtr> aliasTarget(const PolicyConfig& c, kj::StringPtr name) {
  for (auto& a : c.nodeAliases) {
    if (a.alias == name) return a.node.asPtr();
  }
  return nullptr;
}

kj::Maybe<kj::String> checkAliases(const PolicyConfig& c, const kj::HashMap<kj::String, kj::String>& nodes) {
  for (auto& a : c.nodeAliases) {
    if (nodes.find(a.alias) != nullptr && a.alias != a.node) {
      return kj::str(a.where, ": node_aliases.", a.alias, " = \"", a.node, "\": '", a.alias,
                     "' is already the name of a node in the nodes file");
    }
    if (nodes.find(a.node) == nullptr) {
      kj::Vector<kj::StringPtr> names;
      for (auto& n : nodes) names.add(n.key);
      std::sort(names.begin(), names.end(), [](kj::StringPtr x, kj::StringPtr y) { return strcmp(x.cStr(), y.cStr()) < 0; });
      return kj::str(a.where, ": node_aliases.", a.alias, " = \"", a.node, "\": no node '", a.node,
                     "' in the nodes file (", names.size() > 0 ? kj::strArray(names, ", ") : kj::str("it names none: --nodes FILE"),
                     ")");
    }
  }
  return nullptr;
}

void TransferRates::learn(kj::StringPtr to, double bytes, double seconds) {
  if (!(bytes > 0) || !(seconds > 0) || !std::isfinite(bytes) || !std::isfinite(seconds)) return;
  auto& kept = byHost_.findOrCreate(to, [&]() { return kj::HashMap<kj::String, kj::Vector<Sample>>::Entry{kj::str(to), {}}; });
  if (kept.size() == kKept) {
    kj::Vector<Sample> newer(kKept);
    for (size_t i = 1; i < kept.size(); ++i) newer.add(kept[i]);
    kept = kj::mv(newer);
  }
  kept.add(Sample{bytes, seconds});
}

double TransferRates::rate(kj::StringPtr to) const {
  double bytes = 0, seconds = 0;
  KJ_IF_MAYBE(kept, byHost_.find(to)) {
    for (auto& s : *kept) {
      bytes += s.bytes;
      seconds += s.seconds;
    }
  }
  return seconds > 0 ? bytes / seconds : 0;
}

size_t TransferRates::samples(kj::StringPtr to) const {
  KJ_IF_MAYBE(kept, byHost_.find(to)) { return kept->size(); }
  return 0;
}

uint64_t SlotClaims::grant() {
  uint64_t id = next_++;
  slots_.add(Slot{id, -1});
  return id;
}

void SlotClaims::arrived(uint64_t id, double now) {
  for (auto& s : slots_) {
    if (s.id == id) s.arrivedAt = now;
  }
}

void SlotClaims::release(uint64_t id) {
  kj::Vector<Slot> kept;
  for (auto& s : slots_) {
    if (s.id != id) kept.add(s);
  }
  slots_ = kj::mv(kept);
}

double SlotClaims::promised(double now, double windowSeconds, double lagSeconds) {
  double sum = 0;
  kj::Vector<Slot> kept;
  for (auto& s : slots_) {
    if (s.arrivedAt < 0) {
      sum += 1;
    } else {
      double seen = windowSeconds > 0 ? (now - s.arrivedAt - lagSeconds) / windowSeconds : 1;
      if (seen >= 1) continue;  // the window's average shows all of it now
      sum += 1 - std::max(0.0, seen);
    }
    kept.add(s);
  }
  slots_ = kj::mv(kept);
  return sum;
}

size_t SlotClaims::pending() const {
  size_t n = 0;
  for (auto& s : slots_) n += s.arrivedAt < 0;
  return n;
}

ClaimDecision decideClaim(const ClaimInput& in) {
  ClaimDecision d;
  d.share = cpuShare(in.runnable + in.promised + 1, in.cpus);
  if (d.share - in.srcShare >= in.minShareGain - 1e-9) {
    d.grant = true;
    d.why = "it would get enough more CPU here";
  } else if (in.promised > 0) {
    d.why = "its CPUs are promised to jobs on their way or just arrived";
  } else {
    d.why = "it would not give the job enough more CPU";
  }
  return d;
}

}  // namespace mig::shadow
