// The policy file (what is refused, and where it says so) and the policies'
// decisions, from made-up measurements.
#include "shadow/policy.h"

#include <doctest/doctest.h>

#include <string>

using namespace mig::shadow;

namespace {

std::string errorOf(const char* text) {
  PolicyConfig c;
  KJ_IF_MAYBE(e, parsePolicy(text, "p.toml", c)) { return e->cStr(); }
  return "";
}

}  // namespace

TEST_CASE("an empty policy file leaves every default") {
  PolicyConfig c;
  CHECK(parsePolicy("", "p.toml", c) == nullptr);
  CHECK_FALSE(c.ownerReturns.enabled);
  CHECK(c.ownerReturns.threshold == 0.5);
  CHECK(c.ownerReturns.sustainSeconds == 10);
  CHECK(c.ownerReturns.sampleSeconds == 1);
  CHECK(c.drain.timeLimitSeconds == 120);
}

TEST_CASE("a full policy file sets every parameter; integers are numbers too") {
  PolicyConfig c;
  auto e = parsePolicy(
      "# comment\n[owner_returns]\nenabled = true\nthreshold = 1.5\nsustain_seconds = 3\nsample_seconds = 0.5\n"
      "[drain]\ntime_limit_seconds = 30\n",
      "p.toml", c);
  CHECK(e == nullptr);
  CHECK(c.ownerReturns.enabled);
  CHECK(c.ownerReturns.threshold == 1.5);
  CHECK(c.ownerReturns.sustainSeconds == 3);
  CHECK(c.ownerReturns.sampleSeconds == 0.5);
  CHECK(c.drain.timeLimitSeconds == 30);
}

TEST_CASE("an unknown key is refused with its line and the known keys") {
  CHECK(errorOf("[owner_returns]\nenabled = true\nthreshhold = 2\n") ==
        "p.toml:3:1: unknown key 'owner_returns.threshhold' (known in [owner_returns]: enabled, threshold, "
        "sustain_seconds, sample_seconds)");
  CHECK(errorOf("\n[balancing]\n") ==
        "p.toml:2:2: unknown table 'balancing' (known: [owner_returns], [drain], [balance], [node_aliases])");
  CHECK(errorOf("enabled = true\n").find("p.toml:1:1: unknown table 'enabled'") == 0);
}

TEST_CASE("a wrong type is refused with its line") {
  CHECK(errorOf("[owner_returns]\nenabled = \"yes\"\n") == "p.toml:2:11: 'owner_returns.enabled' must be true or false");
  CHECK(errorOf("[drain]\ntime_limit_seconds = \"60\"\n") == "p.toml:2:22: 'drain.time_limit_seconds' must be a number");
  CHECK(errorOf("drain = 3\n") == "p.toml:1:9: 'drain' must be a table ([drain])");
}

TEST_CASE("a bad number is refused with its line and the allowed range") {
  CHECK(errorOf("[owner_returns]\nthreshold = -1\n") ==
        "p.toml:2:13: 'owner_returns.threshold' = -1 is out of range: it must be above 0 and at most 4096");
  CHECK(errorOf("[owner_returns]\nsustain_seconds = 0\n").find("p.toml:2:19: 'owner_returns.sustain_seconds' = 0 is out of range") == 0);
  CHECK(errorOf("[owner_returns]\nthreshold = nan\n").find("p.toml:2:13: 'owner_returns.threshold' = nan is out of range") == 0);
  CHECK(errorOf("[owner_returns]\nsample_seconds = 0.01\n").find("p.toml:2:18:") == 0);
  CHECK(errorOf("[owner_returns]\nsample_seconds = 20\n") ==
        "p.toml: owner_returns.sample_seconds (20) must not be longer than owner_returns.sustain_seconds (10)");
}

TEST_CASE("text that is not TOML is refused with toml++'s line and reason") {
  auto e = errorOf("[owner_returns]\nthreshold = 1.5.2\n");
  CHECK(e.find("p.toml:2:") == 0);
  CHECK(e.find("not valid TOML: ") != std::string::npos);
  CHECK(errorOf("[drain\n").find("p.toml:1:") == 0);
}

TEST_CASE("a missing policy file is one line naming it") {
  PolicyConfig c;
  KJ_IF_MAYBE(e, loadPolicy("/nonexistent/policy.toml", c)) {
    CHECK(std::string(e->cStr()) == "cannot read the policy file /nonexistent/policy.toml: No such file or directory");
  } else {
    FAIL("a missing file was accepted");
  }
}

namespace {

OwnerReturnsParams owner() {
  OwnerReturnsParams p;
  p.enabled = true;
  p.threshold = 0.5;
  p.sustainSeconds = 3;
  p.sampleSeconds = 1;
  return p;
}

}  // namespace

TEST_CASE("owner returns: busy for the sustain time acts, a moment less does not") {
  LoadSample s[] = {{10, 0.1}, {11, 0.9}, {12, 0.8}, {13, 1.0}};
  // Busy since 10 (the end of the quiet interval): 13 - 10 = 3.
  CHECK(ownerIsBack(s, owner(), 13));
  CHECK_FALSE(ownerIsBack(kj::arrayPtr(s, 3), owner(), 12));
}

TEST_CASE("owner returns: one quiet sample starts the count again") {
  LoadSample s[] = {{10, 0.9}, {11, 0.9}, {12, 0.2}, {13, 0.9}, {14, 0.9}};
  CHECK_FALSE(ownerIsBack(s, owner(), 14));
  LoadSample t[] = {{10, 0.9}, {11, 0.9}, {12, 0.2}, {13, 0.9}, {14, 0.9}, {15, 0.7}};
  CHECK(ownerIsBack(t, owner(), 15));
}

TEST_CASE("owner returns: exactly the threshold counts as busy, below it does not") {
  LoadSample s[] = {{10, 0.5}, {11, 0.5}, {12, 0.5}};
  CHECK(ownerIsBack(s, owner(), 12));  // from the first sample's start, 9
  LoadSample t[] = {{10, 0.49}, {11, 0.9}, {12, 0.9}};
  CHECK_FALSE(ownerIsBack(t, owner(), 12));
}

TEST_CASE("owner returns: off, no samples, or stale samples never act") {
  LoadSample s[] = {{10, 2}, {11, 2}, {12, 2}, {13, 2}, {14, 2}};
  auto off = owner();
  off.enabled = false;
  CHECK_FALSE(ownerIsBack(s, off, 14));
  CHECK_FALSE(ownerIsBack(nullptr, owner(), 14));
  CHECK(ownerIsBack(s, owner(), 14.5));
  CHECK_FALSE(ownerIsBack(s, owner(), 16));  // nothing measured for 2 s
}

TEST_CASE("owner returns: a gap in the measurements ends the busy stretch") {
  LoadSample s[] = {{1, 2}, {2, 2}, {3, 2}, {10, 2}, {11, 2}};
  CHECK_FALSE(ownerIsBack(s, owner(), 11));  // busy since 9 only: 2 s
  LoadSample t[] = {{1, 2}, {2, 2}, {3, 2}, {10, 2}, {11, 2}, {12, 2}};
  CHECK(ownerIsBack(t, owner(), 12));
}

namespace {

Destination host(const char* name, double load, uint32_t jobs, bool accepting = true, bool reachable = true) {
  Destination d;
  d.name = kj::str(name);
  d.address = kj::str(name, ":7070");
  d.load1 = load;
  d.jobs = jobs;
  d.accepting = accepting;
  d.reachable = reachable;
  return d;
}

}  // namespace

TEST_CASE("destinations: least loaded first, never self, a drained or unreachable host, then fewest jobs") {
  Destination h[] = {host("a", 0.5, 0), host("b", 0.1, 0), host("c", 0.2, 3), host("d", 0.0, 0, false),
                     host("e", 0.0, 0, true, false), host("f", 0.2, 1)};
  auto r = rankDestinations(h, "b:7070");
  REQUIRE(r.size() == 3);
  CHECK(r[0] == 5);  // f: 0.2, 1 job
  CHECK(r[1] == 2);  // c: 0.2, 3 jobs
  CHECK(r[2] == 0);  // a: 0.5
}

TEST_CASE("destinations: jobs already sent this round count as load, so a drain spreads them") {
  Destination h[] = {host("a", 0.0, 0), host("c", 0.3, 0)};
  CHECK(rankDestinations(h, "b:7070")[0] == 0);
  h[0].sentHere = 1;
  CHECK(rankDestinations(h, "b:7070")[0] == 1);
  h[1].sentHere = 1;
  CHECK(rankDestinations(h, "b:7070")[0] == 0);
}

namespace {

// A job of 100 MB at 50 MB/s: 2.1 s to move; alone on a 1-CPU host with 2 others
// running, an idle 1-CPU host beside it.
BalanceInput busyToIdle() {
  BalanceInput in;
  in.srcLoad = 3;
  in.srcCpus = 1;
  in.dstLoad = 0;
  in.dstCpus = 1;
  in.imageBytes = 100e6;
  in.ranSeconds = 60;
  in.sinceMoveSeconds = 1e9;
  in.bytesPerSecond = 50e6;
  return in;
}

}  // namespace

TEST_CASE("balance: an old job on a busy host moves to an idle one, cost and gain as the rule says") {
  auto d = shouldBalance(busyToIdle(), BalanceParams());
  CHECK(d.move);
  CHECK(d.costSeconds == doctest::Approx(2.1));
  CHECK(d.gainSeconds == doctest::Approx((1 - 1.0 / 3) * 60));
}

TEST_CASE("balance: a job younger than ageMultiple times its cost stays") {
  auto in = busyToIdle();
  in.ranSeconds = 8.3;  // < 4 x 2.1
  auto d = shouldBalance(in, BalanceParams());
  CHECK_FALSE(d.move);
  CHECK(d.why == "it has not run long enough for what the move costs");
  in.ranSeconds = 8.5;
  CHECK(shouldBalance(in, BalanceParams()).move);
}

TEST_CASE("balance: a bigger job or a slower link needs a longer run") {
  auto in = busyToIdle();
  in.imageBytes = 1e9;  // 20.1 s at 50 MB/s
  CHECK_FALSE(shouldBalance(in, BalanceParams()).move);
  in.bytesPerSecond = 1e9;  // 1.1 s
  CHECK(shouldBalance(in, BalanceParams()).move);
  in.bytesPerSecond = 0;  // not measured: the default rate, 50 MB/s
  CHECK(shouldBalance(in, BalanceParams()).costSeconds == doctest::Approx(20.1));
}

TEST_CASE("balance: no ping-pong: a job that just moved does not move again, even if it would gain") {
  auto in = busyToIdle();
  in.sinceMoveSeconds = 30;
  auto d = shouldBalance(in, BalanceParams());
  CHECK_FALSE(d.move);
  CHECK(d.why == "it moved less than the no-return time ago");
  in.sinceMoveSeconds = 120;
  CHECK(shouldBalance(in, BalanceParams()).move);
}

TEST_CASE("balance: after a move the way back gains nothing, so the job does not return") {
  // It moved from a host with 3 runnable to an idle one: now it is alone there, and the
  // host it left has 2 runnable.
  BalanceInput back = busyToIdle();
  back.srcLoad = 1;
  back.dstLoad = 2;
  back.sinceMoveSeconds = 1e9;
  auto d = shouldBalance(back, BalanceParams());
  CHECK_FALSE(d.move);
  CHECK(d.why == "the other host would not give it enough more CPU");
}

TEST_CASE("balance: equal hosts, or a host with spare CPUs, give no gain") {
  auto in = busyToIdle();
  in.srcLoad = 2;
  in.srcCpus = 4;  // it has a whole CPU already
  CHECK_FALSE(shouldBalance(in, BalanceParams()).move);
  in = busyToIdle();
  in.dstLoad = 2;  // there it would be one of 3 as well
  CHECK_FALSE(shouldBalance(in, BalanceParams()).move);
}

TEST_CASE("balance: the [balance] table sets the rule's constants; off by default") {
  PolicyConfig c;
  CHECK(parsePolicy("", "p.toml", c) == nullptr);
  CHECK_FALSE(c.balance.enabled);
  CHECK(c.balance.noReturnSeconds == 120);
  auto e = parsePolicy(
      "[balance]\nenabled = true\ncpus = 1\nsample_seconds = 0.5\nwindow_seconds = 3\nno_return_seconds = 600\n"
      "min_share_gain = 0.3\nage_multiple = 2\nfixed_cost_seconds = 0.2\ndefault_bytes_per_second = 1e8\n",
      "p.toml", c);
  CHECK(e == nullptr);
  CHECK(c.balance.enabled);
  CHECK(c.balance.cpus == 1);
  CHECK(c.balance.sampleSeconds == 0.5);
  CHECK(c.balance.windowSeconds == 3);
  CHECK(c.balance.noReturnSeconds == 600);
  CHECK(c.balance.minShareGain == 0.3);
  CHECK(c.balance.ageMultiple == 2);
  CHECK(c.balance.fixedCostSeconds == 0.2);
  CHECK(c.balance.defaultBytesPerSecond == 1e8);
  CHECK(errorOf("[balance]\nmin_share_gain = 0\n") ==
        "p.toml:2:18: 'balance.min_share_gain' = 0 is out of range: it must be above 0 and at most 1");
  CHECK(errorOf("[balance]\nsample_seconds = 5\nwindow_seconds = 2\n") ==
        "p.toml: balance.sample_seconds (5) must not be longer than balance.window_seconds (2)");
  CHECK(errorOf("[balance]\nenable = true\n").find("unknown key 'balance.enable'") != std::string::npos);
}

namespace {

kj::HashMap<kj::String, kj::String> nodesABC() {
  kj::HashMap<kj::String, kj::String> nodes;
  nodes.insert(kj::str("a"), kj::str("10.0.0.1:7070"));
  nodes.insert(kj::str("b"), kj::str("10.0.0.2:7070"));
  nodes.insert(kj::str("c"), kj::str("10.0.0.3:7070"));
  return nodes;
}

}  // namespace

TEST_CASE("node aliases: another system's names for the nodes, each checked against the nodes file") {
  PolicyConfig c;
  REQUIRE(parsePolicy("[node_aliases]\nn1 = \"a\"\n\"node-02.cluster\" = \"b\"\n", "p.toml", c) == nullptr);
  auto nodes = nodesABC();
  CHECK(checkAliases(c, nodes) == nullptr);
  KJ_IF_MAYBE(t, aliasTarget(c, "node-02.cluster")) { CHECK(*t == "b"); } else { FAIL("no alias node-02.cluster"); }
  KJ_IF_MAYBE(t, aliasTarget(c, "n1")) { CHECK(*t == "a"); } else { FAIL("no alias n1"); }
  CHECK(aliasTarget(c, "a") == nullptr);  // a node's own name is not an alias
  CHECK(aliasTarget(c, "n3") == nullptr);
}

TEST_CASE("node aliases: a name of no node, a node's own name, or a value that is not a name is refused with its line") {
  PolicyConfig c;
  REQUIRE(parsePolicy("[node_aliases]\nn1 = \"a\"\nn4 = \"d\"\n", "p.toml", c) == nullptr);
  auto nodes = nodesABC();
  KJ_IF_MAYBE(e, checkAliases(c, nodes)) {
    CHECK(std::string(e->cStr()) == "p.toml:3:1: node_aliases.n4 = \"d\": no node 'd' in the nodes file (a, b, c)");
  } else {
    FAIL("an alias of no node was accepted");
  }
  PolicyConfig other;
  REQUIRE(parsePolicy("[node_aliases]\nb = \"c\"\n", "p.toml", other) == nullptr);
  KJ_IF_MAYBE(e, checkAliases(other, nodes)) {
    CHECK(std::string(e->cStr()) == "p.toml:2:1: node_aliases.b = \"c\": 'b' is already the name of a node in the nodes file");
  } else {
    FAIL("an alias that is another node's name was accepted");
  }
  CHECK(errorOf("[node_aliases]\nn1 = 3\n") ==
        "p.toml:2:6: 'node_aliases.n1' must be a node's name from the nodes file, in quotes");
  CHECK(errorOf("[node_aliases]\nn1 = \"\"\n").find("p.toml:2:6: 'node_aliases.n1' must be") == 0);
  CHECK(errorOf("node_aliases = 1\n") == "p.toml:1:16: 'node_aliases' must be a table ([node_aliases])");
}

TEST_CASE("transfer rates: none until a send was measured, then bytes over time of the last sends") {
  TransferRates r;
  CHECK(r.rate("b:7070") == 0);
  r.learn("b:7070", 100e6, 2);     // 50 MB/s
  CHECK(r.rate("b:7070") == doctest::Approx(50e6));
  r.learn("b:7070", 1e6, 0.1);     // a small job: mostly latency, weighs little
  CHECK(r.rate("b:7070") == doctest::Approx(101e6 / 2.1));
  CHECK(r.samples("b:7070") == 2);
  CHECK(r.rate("c:7070") == 0);    // per destination
  r.learn("c:7070", 0, 1);         // nothing sent, or no time: not a measurement
  r.learn("c:7070", 1e6, 0);
  CHECK(r.samples("c:7070") == 0);
  for (size_t i = 0; i < TransferRates::kKept; ++i) r.learn("b:7070", 10e6, 1);  // the network changed
  CHECK(r.samples("b:7070") == TransferRates::kKept);
  CHECK(r.rate("b:7070") == doctest::Approx(10e6));
}

TEST_CASE("slot claims: an idle 1-CPU host promises one slot to a job from a busy host, not a second") {
  auto claims = kj::refcounted<SlotClaims>();
  ClaimInput in;
  in.runnable = 0;
  in.cpus = 1;
  in.srcShare = 0.5;  // 2 runnable on 1 CPU where the jobs run now
  in.minShareGain = 0.25;
  in.promised = claims->promised(100, 2, 0);
  auto first = decideClaim(in);
  CHECK(first.grant);
  CHECK(first.share == 1);
  uint64_t id = claims->grant();
  in.promised = claims->promised(100.5, 2, 0);
  CHECK(in.promised == 1);
  auto second = decideClaim(in);
  CHECK_FALSE(second.grant);
  CHECK(second.share == 0.5);
  CHECK(second.why == "its CPUs are promised to jobs on their way or just arrived");
  // From a host with 4 runnable on 1 CPU, one of 2 here is still worth it.
  in.srcShare = 0.25;
  CHECK(decideClaim(in).grant);
  // The move failed: the slot is free again.
  claims->release(id);
  in.srcShare = 0.5;
  in.promised = claims->promised(101, 2, 0);
  CHECK(in.promised == 0);
  CHECK(decideClaim(in).grant);
}

TEST_CASE("slot claims: an arrived job's slot fades as the window's average takes the job in") {
  auto claims = kj::refcounted<SlotClaims>();
  uint64_t a = claims->grant();
  uint64_t b = claims->grant();
  CHECK(claims->pending() == 2);
  claims->arrived(a, 10);
  CHECK(claims->pending() == 1);
  CHECK(claims->promised(10, 2, 1) == doctest::Approx(2));
  CHECK(claims->promised(11, 2, 1) == doctest::Approx(2));     // the count has not seen it yet (lag)
  CHECK(claims->promised(12, 2, 1) == doctest::Approx(1.5));   // half a window after that: half of it
  CHECK(claims->promised(13, 2, 1) == doctest::Approx(1));     // a whole window: only b, still on its way
  claims->release(b);
  CHECK(claims->promised(13, 2, 1) == 0);
  CHECK(claims->pending() == 0);
  // Measured and promised together stay one job: 1 - 0.25 promised + 0.25 measured.
  uint64_t c = claims->grant();
  claims->arrived(c, 20);
  ClaimInput in{0.25, 1, claims->promised(20.5, 2, 0), 0.5, 0.25};
  auto d = decideClaim(in);
  CHECK(d.share == doctest::Approx(0.5));
  CHECK_FALSE(d.grant);
}

TEST_CASE("slot claims: a host short of what the sender's rule asks refuses without promises too") {
  ClaimInput in{1, 1, 0, 0.5, 0.25};  // busy itself: one more would get half a CPU, as where it runs
  auto d = decideClaim(in);
  CHECK_FALSE(d.grant);
  CHECK(d.why == "it would not give the job enough more CPU");
  in.cpus = 2;                         // a second CPU idle
  CHECK(decideClaim(in).grant);
}
