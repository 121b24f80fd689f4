// Keeps the checkpoint signal deliverable: the application can neither block it
// nor take it over. Blocking requests are honoured for every other signal.
#include "shim/real_function.h"
#include "shim/runtime.h"

#include <cerrno>
#include <csignal>

using namespace mig::shim;

namespace {

const sigset_t* withoutCheckpointSignal(int how, const sigset_t* set, sigset_t& copy) {
  if (set == nullptr || how == SIG_UNBLOCK || !sigismember(set, kCheckpointSignal)) return set;
  copy = *set;
  sigdelset(&copy, kCheckpointSignal);
  return &copy;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int sigprocmask(int how, const sigset_t* set, sigset_t* old) {
  sigset_t copy;
  return MIG_REAL(sigprocmask)(how, withoutCheckpointSignal(how, set, copy), old);
}

__attribute__((visibility("default"))) int pthread_sigmask(int how, const sigset_t* set, sigset_t* old) {
  sigset_t copy;
  return MIG_REAL(pthread_sigmask)(how, withoutCheckpointSignal(how, set, copy), old);
}

__attribute__((visibility("default"))) int sigaction(int sig, const struct sigaction* act,
                                                     struct sigaction* old) {
  if (sig == kCheckpointSignal && act != nullptr && g_runtime.vpid != 0) {
    errno = EINVAL;
    return -1;
  }
  return MIG_REAL(sigaction)(sig, act, old);
}

__attribute__((visibility("default"))) sighandler_t signal(int sig, sighandler_t handler) {
  struct sigaction sa {}, old {};
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;  // BSD semantics, as glibc's signal()
  if (sigaction(sig, &sa, &old) != 0) return SIG_ERR;
  return old.sa_handler;
}

}  // extern "C"
