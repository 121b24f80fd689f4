// See prelogin_stream.h.
#include "shadow/prelogin_stream.h"

#include <kj/debug.h>

namespace mig::shadow {

PreLoginStream::PreLoginStream(kj::Own<kj::AsyncIoStream> inner, size_t limit)
    : WrappedStream(kj::mv(inner)), limit_(limit), overLimit_(nullptr) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  overLimit_ = kj::mv(paf.promise);
  onOverLimit_ = kj::mv(paf.fulfiller);
}

void PreLoginStream::reachedLimit() { onOverLimit_->fulfill(); }

kj::Promise<size_t> PreLoginStream::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  if (lifted_) return inner_->tryRead(buffer, minBytes, maxBytes);
  size_t room = limit_ - read_;
  if (room == 0) {
    reachedLimit();
    return KJ_EXCEPTION(DISCONNECTED, "peer sent too much before logging in", limit_);
  }
  // Never more than the room left: what is beyond stays in the kernel's socket buffer.
  return inner_->tryRead(buffer, kj::min(minBytes, room), kj::min(maxBytes, room)).then([this](size_t n) {
    read_ += n;
    if (!lifted_ && read_ >= limit_) reachedLimit();
    return n;
  });
}

}  // namespace mig::shadow
