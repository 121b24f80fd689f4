// The stream of a TCP connection whose peer has not logged in yet: it lets through at
// most a small number of bytes, so that a peer without the cluster key cannot make
// shadowd buffer more (Cap'n Proto reads a whole message, up to 64 MiB by default,
// before the Gate sees it). Once the peer logs in, lift() removes the limit.
#pragma once

#include <kj/async-io.h>

namespace mig::shadow {

class PreLoginStream final : public kj::AsyncIoStream {
 public:
  PreLoginStream(kj::Own<kj::AsyncIoStream> inner, size_t limit);

  // The peer logged in: no limit from now on.
  void lift() { lifted_ = true; }
  // Resolves once the peer, not logged in, has sent `limit` bytes; from then on every
  // read fails (DISCONNECTED). Call once.
  kj::Promise<void> whenOverLimit() { return kj::mv(overLimit_); }
  size_t bytesRead() const { return read_; }

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override { return inner_->write(buffer, size); }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner_->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override { inner_->shutdownWrite(); }
  void abortRead() override { inner_->abortRead(); }
  void getsockopt(int level, int option, void* value, kj::uint* length) override {
    inner_->getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, kj::uint length) override {
    inner_->setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, kj::uint* length) override { inner_->getsockname(addr, length); }
  void getpeername(struct sockaddr* addr, kj::uint* length) override { inner_->getpeername(addr, length); }

 private:
  void reachedLimit();

  kj::Own<kj::AsyncIoStream> inner_;
  size_t limit_;
  size_t read_ = 0;
  bool lifted_ = false;
  kj::Promise<void> overLimit_;
  kj::Own<kj::PromiseFulfiller<void>> onOverLimit_;
};

}  // namespace mig::shadow
