// See answered.h.
#include "deputy/answered.h"

namespace mig::deputy {

bool Answered::ran(const rsc::RequestHeader& h, kj::ArrayPtr<const kj::byte>& reply) const {
  if (h.flags & rsc::kNoReply) {
    if (!anyWrite_ || writeThread_ != h.thread || write_.seq != h.seq) return false;
    reply = write_.reply;
    return true;
  }
  auto it = last_.find(h.thread);
  if (it == last_.end() || it->second.seq != h.seq) return false;
  reply = it->second.reply;
  return true;
}

void Answered::done(const rsc::RequestHeader& h, kj::Array<kj::byte> reply) {
  if (h.flags & rsc::kNoReply) {
    anyWrite_ = true;
    writeThread_ = h.thread;
    write_ = Kept{h.seq, kj::mv(reply)};
    return;
  }
  // A read served from pushed bytes is taken here after its thread went on (its batch
  // waited for a resumed link): the thread's newer call is the one it may send again.
  auto it = last_.find(h.thread);
  if (it != last_.end() && it->second.seq > h.seq) return;
  last_[h.thread] = Kept{h.seq, kj::mv(reply)};
}

bool Answered::cancelBeforeRun(uint32_t thread, uint64_t seq, kj::Array<kj::byte> reply) {
  auto it = last_.find(thread);
  if (it != last_.end() && it->second.seq >= seq) return false;
  last_[thread] = Kept{seq, kj::mv(reply)};
  return true;
}

}  // namespace mig::deputy
