// The group stand-in (stand_in.h): its process and the deputy's end of its socket.
#include "deputy/stand_in.h"

#include "deputy/own_fds.h"
#include "deputy/signals.h"

#include <kj/debug.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::deputy {
namespace {

// How long a stand-in whose deputy died without a word lives on: the home shadowd
// looks at it meanwhile (watchDeputy) to tell a SIGKILL of the group (it died too) from
// one of the deputy alone (it lives).
constexpr int kLingerMs = 5000;

int64_t nowMs() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

// The stand-in's life, in a process forked from the multithreaded deputy: system calls
// only, no allocation. Its first record to the deputy is its PID (si_signo 0), then
// one per signal caught; any byte from the deputy ends it.
[[noreturn]] void runStandIn(int sock, pid_t deputy) {
  prctl(PR_SET_NAME, "mig-standin", 0, 0, 0);
  // The job's fds (pipe ends whose EOF someone waits for, the terminal) are not its.
  if (sock > 0) syscall(SYS_close_range, 0u, static_cast<unsigned>(sock - 1), 0u);
  syscall(SYS_close_range, static_cast<unsigned>(sock + 1), ~0u, 0u);
  if (chdir("/") != 0) _exit(1);  // nor is the job's directory
  sigset_t caught;
  sigemptyset(&caught);
  for (int sig = 1; sig <= 64; ++sig)
    if (passedOn(sig)) sigaddset(&caught, sig);  // every signal is blocked already (takeSignals)
  const int sfd = signalfd(-1, &caught, SFD_CLOEXEC);
  siginfo_t out;
  memset(&out, 0, sizeof out);
  out.si_pid = getpid();
  if (sfd < 0 || write(sock, &out, sizeof out) != sizeof out) _exit(1);
  struct pollfd fds[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
  int64_t endAt = -1;
  for (;;) {
    const int left = endAt < 0 ? -1 : static_cast<int>(endAt - nowMs());
    if (endAt >= 0 && left <= 0) _exit(0);
    const int n = poll(fds, 2, left);
    if (n < 0 && errno != EINTR) _exit(1);
    if (n <= 0) continue;
    if (fds[0].revents != 0) {
      char word;
      if (read(sock, &word, 1) == 1) _exit(0);  // told to end
      fds[0].fd = -1;  // the deputy is gone without a word: see kLingerMs
      endAt = nowMs() + kLingerMs;
    }
    struct signalfd_siginfo s;
    if ((fds[1].revents & POLLIN) == 0 || read(sfd, &s, sizeof s) != sizeof s) continue;
    // Its deputy's own kill(-PGID), run for the job: the job's shim gave it to the
    // job's children born away already.
    if (static_cast<pid_t>(s.ssi_pid) == deputy || fds[0].fd < 0) continue;
    memset(&out, 0, sizeof out);
    out.si_signo = static_cast<int>(s.ssi_signo);
    out.si_errno = s.ssi_errno;
    out.si_code = s.ssi_code;
    out.si_pid = static_cast<pid_t>(s.ssi_pid);
    out.si_uid = s.ssi_uid;
    out.si_value.sival_ptr = reinterpret_cast<void*>(s.ssi_ptr);
    if (write(sock, &out, sizeof out) != sizeof out) fds[0].fd = -1;
  }
}

}  // namespace

StandIn::StandIn(kj::LowLevelAsyncIoProvider& io, kj::TaskSet& tasks) : tasks_(tasks) {
  int sv[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
  fd_ = placeOwn(sv[0]);
  if (fd_ < 0) {
    close(sv[1]);
    KJ_FAIL_SYSCALL("placing the stand-in's socket", errno);
  }
  const pid_t deputy = getpid();
  // Forked twice, the first with no exit signal: only a wait with __WCLONE (never the
  // job's) sees it, and the stand-in is nobody's child in the job.
  const long mid = syscall(SYS_clone, 0L, 0L, 0L, 0L, 0L);
  if (mid == 0) {
    const long standIn = syscall(SYS_clone, static_cast<long>(SIGCHLD), 0L, 0L, 0L, 0L);
    if (standIn == 0) runStandIn(sv[1], deputy);
    _exit(standIn > 0 ? 0 : 1);
  }
  const int err = errno;
  close(sv[1]);
  if (mid < 0) {
    markOwn(fd_, false);
    close(fd_);
    KJ_FAIL_SYSCALL("fork", err);
  }
  int status = 0;
  while (waitpid(static_cast<pid_t>(mid), &status, __WCLONE) < 0 && errno == EINTR) {
  }
  siginfo_t hello;
  ssize_t n;
  do n = read(fd_, &hello, sizeof hello);
  while (n < 0 && errno == EINTR);
  if (n != sizeof hello || hello.si_pid <= 0) {
    markOwn(fd_, false);
    close(fd_);
    KJ_FAIL_REQUIRE("the stand-in did not start", n < 0 ? strerror(errno) : "no PID from it");
  }
  pid_ = hello.si_pid;
  stream_ = io.wrapSocketFd(fd_, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);
}

StandIn::~StandIn() {
  stream_ = nullptr;
  markOwn(fd_, false);
}

void StandIn::passOnTo(kj::Function<void(const siginfo_t&)> passOn) {
  passOn_ = kj::mv(passOn);
  tasks_.add(readNext());
}

kj::Promise<void> StandIn::readNext() {
  return stream_->tryRead(&next_, sizeof next_, sizeof next_).then([this](size_t n) -> kj::Promise<void> {
    if (n < sizeof next_) return kj::READY_NOW;  // it ended: nothing more to pass on
    passOn_(next_);
    return readNext();
  });
}

void StandIn::end() {
  const char word = 'q';
  if (write(fd_, &word, 1) != 1) {
    // It is gone already: nothing to end.
  }
}

}  // namespace mig::deputy
