// The stream of a TCP connection whose peer has not logged in yet: it lets through at
// most a small number of bytes, so that a peer without the cluster key cannot make
// shadowd buffer more (Cap'n Proto reads a whole message, up to 64 MiB by default,
// before the Gate sees it). Once the peer logs in, lift() removes the limit.
#pragma once

#include "shadow/wrapped_stream.h"

namespace mig::shadow {

class PreLoginStream final : public WrappedStream {
 public:
  PreLoginStream(kj::Own<kj::AsyncIoStream> inner, size_t limit);

  // The peer logged in: no limit from now on.
  void lift() { lifted_ = true; }
  // Resolves once the peer, not logged in, has sent `limit` bytes; from then on every
  // read fails (DISCONNECTED). Call once.
  kj::Promise<void> whenOverLimit() { return kj::mv(overLimit_); }
  size_t bytesRead() const { return read_; }

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;

 private:
  void reachedLimit();

  size_t limit_;
  size_t read_ = 0;
  bool lifted_ = false;
  kj::Promise<void> overLimit_;
  kj::Own<kj::PromiseFulfiller<void>> onOverLimit_;
};

}  // namespace mig::shadow
