// What both servers of a post-copy hop's pages share (PageSource in rsc/mig.capnp): the
// hop's sender serving them from the frozen job and its copy (send_command.cc), and
// shadowd serving them from the copy a dead sender left (spooled_pages.cc). A request
// is checked and answered here, the bytes taken where each keeps them (fill); the
// destination saying it has every page ends the serving (`finished`, also told by
// Node.resumePages's answer: markFinished); the bytes sent and the time of the last
// request tell the serving loops how it goes.
#pragma once

#include "resources/network_page_source.h"
#include "shadow/mig.capnp.h"

#include <kj/async.h>
#include <kj/debug.h>

#include <chrono>

namespace mig::shadow {

class PageServer : public rpc::PageSource::Server {
 public:
  explicit PageServer(kj::Own<kj::PromiseFulfiller<void>> finished) : finished_(kj::mv(finished)) {}

  kj::Promise<void> read(ReadContext context) override {
    auto p = context.getParams();
    lastRequest_ = std::chrono::steady_clock::now();
    KJ_REQUIRE(p.getLen() > 0 && p.getLen() <= resources::kMaxPageRequest, "bad page request", p.getLen());
    auto bytes = context.getResults().initBytes(static_cast<unsigned>(p.getLen()));
    fill(p.getAddr(), bytes);
    sent_ += bytes.size();
    return kj::READY_NOW;
  }

  kj::Promise<void> finished(FinishedContext) override {
    markFinished();
    return kj::READY_NOW;
  }

  // The destination has every page (it said so, or resumePages did).
  void markFinished() {
    if (finished_->isWaiting()) finished_->fulfill();
  }

  uint64_t sent() const { return sent_; }
  // The last page request, or the start of the serving (touch).
  std::chrono::steady_clock::time_point lastRequest() const { return lastRequest_; }
  void touch() { lastRequest_ = std::chrono::steady_clock::now(); }

 protected:
  // The pages at [addr, addr + bytes.size()), which are all among the post-copy pages
  // (else it throws: a request outside them).
  virtual void fill(uint64_t addr, kj::ArrayPtr<kj::byte> bytes) = 0;

 private:
  kj::Own<kj::PromiseFulfiller<void>> finished_;
  uint64_t sent_ = 0;
  std::chrono::steady_clock::time_point lastRequest_ = std::chrono::steady_clock::now();
};

}  // namespace mig::shadow
