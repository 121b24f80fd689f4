// `migctl drain [NODE]` and `migctl undrain [NODE]`: a host stops taking jobs and its
// guests leave it, each for the least loaded host that accepts it (shadow/drain.h,
// docs/policies.md); undrain takes jobs again. Asked of this host's shadowd, which
// forwards to NODE's.
#include "migctl/commands.h"
#include "migctl/local_link.h"
#include "shadow/error.h"

#include <cstdio>

namespace mig::migctl {
namespace {

constexpr const char* kDrainAbout =
    "Drains NODE (default: this host): it refuses new jobs, and every job that migrated in "
    "there leaves it, one after the other, for the least loaded host that accepts it. One "
    "line per job: where it went and how long it was frozen, or why it could not move. "
    "Jobs whose home is NODE stay there unless --all. Exit status 1 if a job could not move.";
constexpr const char* kUndrainAbout = "NODE (default: this host) takes jobs again after migctl drain.";

// A move not started yet when the time limit ends is not started; one under way runs on
// (bounded by shadowd's --transfer-timeout): migctl waits that much longer.
constexpr uint64_t kGraceMs = 15 * 60 * 1000;

struct DrainOptions {
  kj::String socket;
  kj::String node;
  bool all = false;
  uint64_t timeLimitMs = 0;
};

int drain(const DrainOptions& o, bool drained) {
  LocalLink link(o.socket);
  auto req = link.local.drainRequest();
  req.setNode(o.node);
  req.setDrained(drained);
  req.setAll(o.all);
  req.setTimeLimitMs(o.timeLimitMs);
  uint64_t wait = (o.timeLimitMs > 0 ? o.timeLimitMs : 24 * 3600 * 1000ull) + kGraceMs;
  kj::StringPtr what = drained ? "drain" : "undrain";
  auto node = o.node.size() > 0 ? o.node.asPtr() : kj::StringPtr("this host");
  kj::Maybe<capnp::Response<rpc::Local::DrainResults>> answer;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { answer = link.wait(req.send(), wait, what); })) {
    image::fail(kj::str(what, " ", node, ": ", shadow::oneLine(e->getDescription())));
  }
  rpc::Local::DrainResults::Reader r = KJ_ASSERT_NONNULL(answer);
  node = r.getNode();
  if (!drained) {
    printf("%s takes jobs again\n", node.cStr());
    return 0;
  }
  int failed = 0;
  printf("%s is drained: it takes no new jobs; %u job(s) to move\n", node.cStr(), r.getMoves().size());
  for (auto m : r.getMoves()) {
    if (m.getMoved()) {
      printf("PID %d of %s (%s): moved to %s, frozen %.1f ms\n", m.getVpid(), m.getHome().cStr(),
             m.getCommand().cStr(), m.getDestination().cStr(), m.getFreezeMs());
    } else {
      ++failed;
      printf("PID %d of %s (%s): could not move: %s\n", m.getVpid(), m.getHome().cStr(), m.getCommand().cStr(),
             m.getError().cStr());
    }
  }
  fflush(stdout);
  return failed > 0 ? 1 : 0;
}

kj::MainFunc drainOrUndrain(cli::Context& cli, bool drained) {
  auto opts = kj::heap<DrainOptions>();
  DrainOptions& o = *opts;
  kj::MainBuilder b(cli, cli::kVersion, drained ? kDrainAbout : kUndrainAbout);
  addSocketOption(b, o.socket);
  if (drained) {
    b.addOption({"all"}, [&o]() -> kj::MainBuilder::Validity {
      o.all = true;
      return true;
    }, "also move the jobs whose home is NODE and that run there (they become away from home)");
    b.addOptionWithArg({"time-limit"}, [&o](kj::StringPtr v) -> kj::MainBuilder::Validity {
      KJ_IF_MAYBE(why, cli::parseSecondsMs(v, 86400, o.timeLimitMs)) { return kj::mv(*why); }
      return true;
    }, "S", "start no move after S seconds (default: [drain] time_limit_seconds of NODE's "
            "policy file, 120); the jobs not moved by then are reported and stay");
  }
  b.expectOptionalArg("NODE", [&o](kj::StringPtr v) -> kj::MainBuilder::Validity {
     o.node = kj::str(v);
     return true;
   })
   .callAfterParsing([&o, &cli, drained]() -> kj::MainBuilder::Validity {
     cli.status = drain(o, drained);
     return true;
   });
  return cli::owning(kj::mv(opts), b.build());
}

}  // namespace

kj::MainFunc drainMain(cli::Context& cli) { return drainOrUndrain(cli, true); }
kj::MainFunc undrainMain(cli::Context& cli) { return drainOrUndrain(cli, false); }

}  // namespace mig::migctl
