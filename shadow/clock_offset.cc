// See clock_offset.h.
#include "shadow/clock_offset.h"

#include <kj/vector.h>

#include <cstdlib>
#include <ctime>

namespace mig::shadow {
namespace {

// A handful of exchanges on an idle link: enough to get one without a scheduling
// hiccup in it, few enough not to delay the restore (a round trip is well under 1 ms
// on a LAN).
constexpr int kSamples = 5;

int64_t realtimeNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// TEST HOOK, not a feature: MIG_TEST_CLOCK_SKEW_NS=N makes this shadowd's Node.clock
// answer N nanoseconds ahead of its real clock, so tests on one machine (whose hosts
// share a single realtime clock) can give a job's home a clock that differs from the
// host it runs on. Unset or 0 in real use.
int64_t testSkewNs() {
  static const int64_t skew = [] {
    const char* v = getenv("MIG_TEST_CLOCK_SKEW_NS");
    return v != nullptr ? strtoll(v, nullptr, 10) : 0;
  }();
  return skew;
}

kj::Promise<void> sample(rpc::Node::Client home, kj::Vector<ClockSample>& out, int left) {
  if (left == 0) return kj::READY_NOW;
  int64_t sent = realtimeNs();
  return home.clockRequest().send().then(
      [home, &out, left, sent](capnp::Response<rpc::Node::ClockResults>&& r) mutable {
        out.add(ClockSample{sent, r.getRealtimeNs(), realtimeNs()});
        return sample(kj::mv(home), out, left - 1);
      });
}

}  // namespace

kj::Promise<int64_t> measureHomeClockOffset(Daemon& d, kj::StringPtr home) {
  if (d.resolveNode(home) == d.address()) return int64_t{0};  // coming back home
  auto samples = kj::heap<kj::Vector<ClockSample>>();
  auto& ref = *samples;
  return d.peer(home)
      .then([&ref](rpc::Node::Client node) { return sample(kj::mv(node), ref, kSamples); })
      .then([samples = kj::mv(samples)]() { return bestOffsetNs(samples->asPtr()); });
}

int64_t clockForPeers() { return realtimeNs() + testSkewNs(); }

}  // namespace mig::shadow
