// A process's end, judged by two looks (process_end.h).
#include "shadow/process_end.h"

#include "resources/proc_file.h"

#include <kj/async-unix.h>

#include <sys/syscall.h>
#include <unistd.h>

namespace mig::shadow {

bool looksEnded(int pidfd, pid_t pid) {
  return syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) != 0 || !resources::processRuns(pid);
}

namespace {

// The observer must go before the fd it watches: one fd is watched by one observer.
struct PidfdWatch {
  PidfdWatch(kj::UnixEventPort& port, kj::AutoCloseFd f)
      : fd(kj::mv(f)), observer(port, fd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ) {}
  kj::AutoCloseFd fd;
  kj::UnixEventPort::FdObserver observer;
};

}  // namespace

void watchProcessEnd(Daemon& d, pid_t pid, kj::AutoCloseFd pidfd, kj::Function<kj::Promise<void>()> ended) {
  auto watch = kj::heap<PidfdWatch>(d.eventPort(), kj::mv(pidfd));
  auto woken = watch->observer.whenBecomesReadable();
  d.tasks().add(woken.then([&d, pid, watch = kj::mv(watch), ended = kj::mv(ended)]() mutable -> kj::Promise<void> {
    // A live process's wake-up (an exec) is over by the second look; an end stays.
    auto look = looksEnded(watch->fd.get(), pid)
                    ? d.io().provider->getTimer().afterDelay(kSecondLookMs * kj::MILLISECONDS)
                    : kj::Promise<void>(kj::READY_NOW);
    return look.then([&d, pid, watch = kj::mv(watch), ended = kj::mv(ended)]() mutable -> kj::Promise<void> {
      if (looksEnded(watch->fd.get(), pid)) return ended();
      auto fd = kj::mv(watch->fd);
      watch = nullptr;  // its observer first
      watchProcessEnd(d, pid, kj::mv(fd), kj::mv(ended));
      return kj::READY_NOW;
    });
  }));
}

}  // namespace mig::shadow
