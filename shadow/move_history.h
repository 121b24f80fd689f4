// The moves this shadowd was asked to make (Local.migrate), for `migctl history`: a
// bounded list in memory, oldest dropped first. In memory rather than a file: it costs
// no disk write per move and has no format to keep readable across versions; what it
// loses (the moves before shadowd last started) its --log file still has.
#pragma once

#include "shadow/mig.capnp.h"

#include <kj/function.h>
#include <kj/string.h>
#include <kj/vector.h>

#include <cstdint>
#include <sys/types.h>

namespace mig::shadow {

struct Move {
  double time = 0;  // CLOCK_REALTIME seconds, when it was asked
  pid_t pid = 0;
  uint64_t jobId = 0;
  kj::String from;
  kj::String to;
  rpc::NetworkPolicy network = rpc::NetworkPolicy::HOME;
  bool ok = false;
  double freezeMs = 0;
  kj::String error;
  kj::String command;
};

class MoveHistory {
 public:
  // Enough for a screen of recent moves and a drain of a busy host.
  static constexpr size_t kKept = 100;

  // Called with every move added (shadowd's metrics count them), before it is kept.
  void setObserver(kj::Function<void(const Move&)> observer) { observer_ = kj::mv(observer); }

  void add(Move move) {
    KJ_IF_MAYBE(o, observer_) { (*o)(move); }
    if (moves_.size() == kKept) {
      // Rare (once per move past 100) and small: shift rather than keep a ring's head.
      kj::Vector<Move> kept(kKept);
      for (size_t i = 1; i < moves_.size(); ++i) kept.add(kj::mv(moves_[i]));
      moves_ = kj::mv(kept);
    }
    moves_.add(kj::mv(move));
  }

  void fill(capnp::List<rpc::MoveRecord>::Builder out) const {
    for (size_t i = 0; i < moves_.size(); ++i) {
      const Move& m = moves_[i];
      auto r = out[static_cast<unsigned>(i)];
      r.setTime(m.time);
      r.setPid(m.pid);
      r.setJobId(m.jobId);
      r.setFrom(m.from);
      r.setTo(m.to);
      r.setNetwork(m.network);
      r.setOk(m.ok);
      r.setFreezeMs(m.freezeMs);
      r.setError(m.error);
      r.setCommand(m.command);
    }
  }

  size_t size() const { return moves_.size(); }

 private:
  kj::Vector<Move> moves_;
  kj::Maybe<kj::Function<void(const Move&)>> observer_;
};

}  // namespace mig::shadow
