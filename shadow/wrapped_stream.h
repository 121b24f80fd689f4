// A kj::AsyncIoStream over another one: what a wrapper leaves alone (writes, unless it
// overrides them; closing; socket options and addresses) goes straight to the stream
// under it. The link's wrappers (prelogin_stream.h, secure_stream.h) derive from it
// and override only what they change.
#pragma once

#include <kj/async-io.h>

namespace mig::shadow {

class WrappedStream : public kj::AsyncIoStream {
 public:
  explicit WrappedStream(kj::Own<kj::AsyncIoStream> inner) : inner_(kj::mv(inner)) {}

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

 protected:
  kj::Own<kj::AsyncIoStream> inner_;
};

}  // namespace mig::shadow
