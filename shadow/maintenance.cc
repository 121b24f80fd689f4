// See maintenance.h. The host stays drained for the rest of shadowd's life: a job
// arriving while the guests leave would be left behind.
#include "shadow/maintenance.h"

#include "shadow/drain.h"
#include "shadow/error.h"

namespace mig::shadow {
namespace {

// Polls (every 0.1 s, at most `left` times) until no round of moves is under way.
kj::Promise<void> untilNoRound(Daemon& d, int left) {
  if (!d.admission().evacuating || left <= 0) return kj::READY_NOW;
  return d.io().provider->getTimer().afterDelay(100 * kj::MILLISECONDS).then([&d, left]() {
    return untilNoRound(d, left - 1);
  });
}

}  // namespace

kj::Promise<void> sendGuestsAway(Daemon& d) {
  size_t guests = 0;
  for (auto& e : d.hostedJobs()) guests += e.value->running && !e.value->leaving ? 1 : 0;
  d.admission().drained = true;
  if (guests == 0) return kj::READY_NOW;
  uint64_t limitMs = d.config().stopTimeLimitMs;
  d.log(kj::str("stopping: ", guests, " job(s) that migrated in leave first (no move started after ",
                limitMs / 1000.0, " s; a second SIGTERM stops at once)"));
  // A drain or owner-returns round under way keeps going: its jobs are moving already;
  // this round then takes the ones left.
  auto idle = untilNoRound(d, static_cast<int>(limitMs / 100));
  return idle.then([&d, limitMs]() { return evacuate(d, false, limitMs, "maintenance"); })
      .then([&d](kj::Array<MoveOutcome> moves) {
        kj::Vector<kj::String> stuck;
        size_t moved = 0;
        for (auto& m : moves) {
          if (m.moved) {
            ++moved;
          } else {
            stuck.add(kj::str("PID ", m.vpid, " of ", m.home, " (", m.command, "): ", m.error));
          }
        }
        if (stuck.size() == 0) {
          d.log(kj::str("stopping: all ", moved, " job(s) that migrated in have left"));
        } else {
          d.log(kj::str("stopping: ", moved, " job(s) left; ", stuck.size(), " could not move, still here: ",
                        kj::strArray(stuck, "; ")));
        }
      }, [&d](kj::Exception&& e) {
        d.log(kj::str("stopping: the jobs that migrated in could not be moved: ", oneLine(e.getDescription())));
      });
}

}  // namespace mig::shadow
