// Forwarding the deputy's signals to the job (signals.h).
#include "deputy/signals.h"

#include <csignal>
#include <ctime>

namespace mig::deputy {
namespace {

// Signals the deputy passes on to the job. SIGALRM is not among them: the job's
// own timer went with it (and the deputy disarms the one it inherited). SIGCHLD is:
// the children the job forked at home are the deputy's now, and the job reaps them
// with forwarded waits when it hears of them.
constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGCHLD};

// The signal kj may use for itself: 62, next to the shim's checkpoint signal (63);
// the deputy never forwards either.
constexpr int kReservedSignal = 62;

}  // namespace

void takeSignals(uint64_t dropMask) {
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, nullptr);
  for (int sig = 1; sig <= 64; ++sig) {
    if (!(dropMask & (1ull << (sig - 1)))) continue;
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&one, nullptr, &zero) == sig) {
    }
  }
  // kj wakes its event loop with SIGUSR1 unless told otherwise; SIGUSR1 is the job's.
  kj::UnixEventPort::setReservedSignal(kReservedSignal);
  for (int sig : kForwarded) kj::UnixEventPort::captureSignal(sig);
}

SignalForwarder::SignalForwarder(kj::UnixEventPort& port, kj::TaskSet& tasks, rpc::Local::Client local,
                                 uint64_t jobId, kj::ArrayPtr<const kj::byte> token)
    : port_(port), tasks_(tasks), local_(kj::mv(local)), jobId_(jobId), token_(token) {
  for (int sig : kForwarded) tasks_.add(forward(sig));
}

kj::Promise<void> SignalForwarder::forward(int sig) {
  return port_.onSignal(sig).then([this, sig](siginfo_t) {
    auto req = local_.deputySignalRequest();
    req.setJobId(jobId_);
    req.setToken(token_);
    req.setSignal(sig);
    tasks_.add(req.send().ignoreResult());
    return forward(sig);
  });
}

}  // namespace mig::deputy
