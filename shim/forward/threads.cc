// Threads created while forwarding is active. Syscall user dispatch is not inherited
// by a new thread, so pthread_create is interposed: the new thread turns it on for
// itself before the application's start routine runs. While glibc creates the thread
// (stack mmap, mprotect, signal masks, clone3) the creating thread's calls are let
// through undispatched: none of them concerns home. Threads the shim starts for
// itself (their start routine is in the shim's code, like the control thread) stay
// undispatched. Threads made by raw clone calls are handled in clone.cc.
#include "shim/forward/activation.h"
#include "shim/forward/state.h"
#include "shim/forward/sud.h"
#include "shim/real_function.h"
#include "shim/runtime.h"

#include <pthread.h>
#include <cstdlib>

using namespace mig::forward;

namespace {

struct Start {
  void* (*fn)(void*);
  void* arg;
};

void* dispatchedStart(void* p) {
  Start start = *static_cast<Start*>(p);
  free(p);
  dispatchThisThread();
  return start.fn(start.arg);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int pthread_create(pthread_t* thread, const pthread_attr_t* attr,
                                                                    void* (*fn)(void*), void* arg) {
  const State& s = mig::shim::g_runtime.forward;
  if (s.status.load(std::memory_order_acquire) != kActive || shimText().contains(reinterpret_cast<uint64_t>(fn))) {
    const uint8_t selector = t_selector;
    allowSyscalls();
    int r = MIG_REAL(pthread_create)(thread, attr, fn, arg);
    t_selector = selector;
    return r;
  }
  auto* start = static_cast<Start*>(malloc(sizeof(Start)));
  if (start == nullptr) return EAGAIN;
  *start = Start{fn, arg};
  const uint8_t selector = t_selector;
  allowSyscalls();
  int r = MIG_REAL(pthread_create)(thread, attr, dispatchedStart, start);
  t_selector = selector;
  if (r != 0) free(start);
  return r;
}
