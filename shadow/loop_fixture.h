// An event loop for the shadow unit tests that serve or call Cap'n Proto in-process
// (direct_link_test.cc, link_process_test.cc), with a TaskSet for the background work
// they start. A task's failure is ignored here: the tests see it where it shows, as a
// call that fails or a stream that ends.
#pragma once

#include <kj/async-io.h>

namespace mig::shadow {

struct LoopFixture {
  struct Ignore final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  };
  kj::AsyncIoContext io = kj::setupAsyncIo();
  Ignore ignore;
  kj::TaskSet tasks{ignore};
};

}  // namespace mig::shadow
