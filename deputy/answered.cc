// See answered.h.
#include "deputy/answered.h"

namespace mig::deputy {

bool Answered::ran(const rsc::RequestHeader& h, kj::ArrayPtr<const kj::byte>& reply) const {
  if (h.flags & rsc::kNoReply) {
    for (auto& w : writes_) {
      if (w.order != h.order || w.thread != h.thread || w.answer.seq != h.seq) continue;
      reply = w.answer.reply;
      return true;
    }
    return false;
  }
  auto it = last_.find(h.thread);
  if (it == last_.end() || it->second.seq != h.seq) return false;
  reply = it->second.reply;
  return true;
}

void Answered::done(const rsc::RequestHeader& h, kj::Array<kj::byte> reply) {
  if (h.flags & rsc::kNoReply) {
    // Twice what may be on its way: a batch sent again after a break comes behind the
    // ones sent before it.
    if (writes_.size() >= 2 * rsc::kWritesInFlight) writes_.pop_front();
    writes_.push_back(Batch{h.order, h.thread, Kept{h.seq, kj::mv(reply)}});
    return;
  }
  last_[h.thread] = Kept{h.seq, kj::mv(reply)};
}

void Answered::takenLate(const rsc::RequestHeader& h, kj::Array<kj::byte> reply) {
  // Its batch waited for a resumed link while the thread went on: the thread's newer
  // call is the one it may send again. (Only here: a program a process exec'd numbers
  // its calls from 1 again under the same thread id, so done() must not compare.)
  auto it = last_.find(h.thread);
  if (it != last_.end() && it->second.seq > h.seq) return;
  done(h, kj::mv(reply));
}

bool Answered::cancelBeforeRun(uint32_t thread, uint64_t seq, kj::Array<kj::byte> reply) {
  auto it = last_.find(thread);
  if (it != last_.end() && it->second.seq >= seq) return false;
  last_[thread] = Kept{seq, kj::mv(reply)};
  return true;
}

}  // namespace mig::deputy
