// The group stand-in (stand_in.h): its process and the deputy's end of its socket.
#include "deputy/stand_in.h"

#include "deputy/log.h"
#include "deputy/own_fds.h"
#include "deputy/signals.h"

#include <kj/debug.h>

#include <cerrno>
#include <cstring>
#include <ctime>
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

// The stand-in's life, in a process forked from the multithreaded deputy: system calls
// only, no allocation. Its first record to the deputy is its PID (si_signo 0); then for
// each 'f' from the deputy it sends the signals caught since, and a record with
// si_signo 0; 'q' ends it.
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
  const int sfd = signalfd(-1, &caught, SFD_CLOEXEC | SFD_NONBLOCK);
  siginfo_t out;
  memset(&out, 0, sizeof out);
  out.si_pid = getpid();
  if (sfd < 0 || write(sock, &out, sizeof out) != sizeof out) _exit(1);
  for (;;) {
    char word;
    const ssize_t n = read(sock, &word, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n == 1 && word == 'f') {
      struct signalfd_siginfo s;
      while (read(sfd, &s, sizeof s) == sizeof s) {
        // Its deputy's own kill(-PGID), run for the job: the job's shim gave it to the
        // job's children born away already.
        if (static_cast<pid_t>(s.ssi_pid) == deputy) continue;
        memset(&out, 0, sizeof out);
        out.si_signo = static_cast<int>(s.ssi_signo);
        out.si_code = s.ssi_code;
        out.si_pid = static_cast<pid_t>(s.ssi_pid);
        out.si_uid = s.ssi_uid;
        if (write(sock, &out, sizeof out) != sizeof out) break;
      }
      memset(&out, 0, sizeof out);
      if (write(sock, &out, sizeof out) == sizeof out) continue;
    }
    if (n == 1 && word == 'q') _exit(0);
    break;
  }
  // The deputy is gone without a word: see kLingerMs.
  struct timespec linger = {kLingerMs / 1000, 0};
  while (nanosleep(&linger, &linger) != 0 && errno == EINTR) {
  }
  _exit(0);
}

}  // namespace

StandIn::StandIn(kj::LowLevelAsyncIoProvider& io, kj::Timer& timer) : timer_(timer) {
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

bool StandIn::takeMatch(const siginfo_t& info) {
  for (auto it = caught_.begin(); it != caught_.end(); ++it) {
    if (it->si_signo == info.si_signo && it->si_code == info.si_code && it->si_pid == info.si_pid &&
        it->si_uid == info.si_uid) {
      caught_.erase(it);
      return true;
    }
  }
  return false;
}

kj::Promise<bool> StandIn::sentToGroup(const siginfo_t& info) {
  if (takeMatch(info)) return true;
  if (gone_) return false;
  const char word = 'f';
  if (write(fd_, &word, 1) != 1) {
    gone_ = true;
    return false;
  }
  constexpr uint64_t kAnswerMs = 2000;  // it answers in microseconds; a loaded host is slower
  return timer_.timeoutAfter(kAnswerMs * kj::MILLISECONDS, readUntilEnd())
      .then([this, info]() { return takeMatch(info); },
            [this](kj::Exception&& e) {
              if (!gone_) log(kj::str("the group stand-in did not answer (", e.getDescription(), "): no longer asked"));
              gone_ = true;
              return false;
            });
}

kj::Promise<void> StandIn::readUntilEnd() {
  return stream_->tryRead(&next_, sizeof next_, sizeof next_).then([this](size_t n) -> kj::Promise<void> {
    if (n < sizeof next_) {
      gone_ = true;  // killed, or ended: nothing more to tell
      return kj::READY_NOW;
    }
    if (next_.si_signo == 0) return kj::READY_NOW;
    // What the deputy never asks about (a signal it dropped) is not kept for long.
    constexpr size_t kKept = 64;
    if (caught_.size() == kKept) caught_.pop_front();
    caught_.push_back(next_);
    return readUntilEnd();
  });
}

void StandIn::end() {
  const char word = 'q';
  if (write(fd_, &word, 1) != 1) {
    // It is gone already: nothing to end.
  }
}

}  // namespace mig::deputy
