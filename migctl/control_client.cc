// See control_client.h.
#include "migctl/control_client.h"

#include "image/image_error.h"
#include "resources/proc_owner.h"
#include "shim/fd_passing.h"

#include <kj/vector.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

namespace mig::migctl {

using image::fail;

ControlClient::ControlClient(pid_t pid) : pid_(pid), realPid_(pid) {
  if (pid <= 0) fail(kj::str("'", pid, "' is not a process ID"));
  fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd_ < 0) fail(kj::str("cannot create a socket: ", strerror(errno)));
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  int len = control::ctlSocketName(addr.sun_path, sizeof(addr.sun_path), getuid(), pid);
  bool connected = connect(fd_, reinterpret_cast<sockaddr*>(&addr), offsetof(sockaddr_un, sun_path) + len) == 0;
  int err = errno;
  if (!connected) {
    // Not a live process's own name: maybe a restored process's virtual PID.
    len = control::ctlSocketName(addr.sun_path, sizeof(addr.sun_path), getuid(), pid, true);
    connected = connect(fd_, reinterpret_cast<sockaddr*>(&addr), offsetof(sockaddr_un, sun_path) + len) == 0;
  }
  if (!connected) {
    ::close(fd_);
    fd_ = -1;
    if (::kill(pid, 0) != 0 && errno == ESRCH) fail(kj::str("no process with PID ", pid));
    if (err == ECONNREFUSED) {
      fail(kj::str("process ", pid, " does not run under mig (start it with LD_PRELOAD=libmig.so)"));
    }
    fail(kj::str("cannot reach the mig control socket of process ", pid, ": ", strerror(err)));
  }
  struct ucred cred {};
  socklen_t credLen = sizeof(cred);
  if (getsockopt(fd_, SOL_SOCKET, SO_PEERCRED, &cred, &credLen) != 0 || cred.pid <= 0) {
    int err = errno;
    ::close(fd_);
    fd_ = -1;
    fail(kj::str("cannot tell who runs process ", pid, " (SO_PEERCRED): ", strerror(err)));
  }
  realPid_ = cred.pid;
  // Whose job it is, by the kernel's word, not by the name the process gave its socket
  // (it picks that name itself, from a getuid() it may fake): SO_PEERCRED and the real
  // uid in /proc both must be ours.
  uid_t realUid = resources::realUidOf(realPid_);
  if (cred.uid != getuid() || realUid != getuid()) {
    ::close(fd_);
    fd_ = -1;
    fail(kj::str("process ", pid, " belongs to uid ", cred.uid != getuid() ? cred.uid : realUid,
                 " (as the kernel reports it), not to you (uid ", getuid(), "): not yours to checkpoint or move"));
  }
}


ControlClient::~ControlClient() {
  // Never leave a process frozen: if migctl fails between freeze and verdict,
  // the threads resume (the shim also resumes when this socket closes).
  if (frozen_) send(control::kOpResume);
  if (fd_ >= 0) ::close(fd_);
}

control::Reply ControlClient::freeze(int timeoutSeconds) {
  requestFreeze();
  return awaitFreeze(timeoutSeconds);
}

void ControlClient::requestFreeze() {
  control::Request req{control::kMagic, control::kVersion, control::kOpCheckpoint, getpid()};
  if (::write(fd_, &req, sizeof(req)) != sizeof(req)) {
    fail(kj::str("cannot send the checkpoint request to process ", pid_, ": ", strerror(errno)));
  }
}

control::Reply ControlClient::awaitFreeze(int timeoutSeconds) {
  struct pollfd p = {fd_, POLLIN, 0};
  int ready = poll(&p, 1, timeoutSeconds * 1000);
  if (ready == 0) fail(kj::str("process ", pid_, " did not answer the checkpoint request within ", timeoutSeconds, " s"));
  control::Reply reply{};
  ssize_t n = ::read(fd_, &reply, sizeof(reply));
  if (n != sizeof(reply) || reply.magic != control::kMagic) {
    fail(kj::str("process ", pid_, " gave no valid answer to the checkpoint request"));
  }
  switch (reply.status) {
    case control::kOk: break;
    case control::kThreadTimeout:
      fail(kj::str("a thread of process ", pid_, " did not stop for the checkpoint (it may block signals); the process goes on"));
    case control::kSigevThread:
      fail(kj::str("process ", pid_, " has a SIGEV_THREAD POSIX timer, which mig cannot save (glibc's timer helper "
                   "thread blocks every signal, so it cannot be stopped); the process goes on"));
    case control::kBadRequest:
      fail(kj::str("process ", pid_, " runs a libmig that does not understand this migctl"));
    default:
      fail(kj::str("process ", pid_, " refused the checkpoint (status ", reply.status, ")"));
  }
  frozen_ = true;
  return reply;
}

void ControlClient::send(uint32_t op) {
  control::Request cmd{control::kMagic, control::kVersion, op, getpid()};
  (void)!::write(fd_, &cmd, sizeof(cmd));
}

int ControlClient::trackWrites(kj::String& why) { return askForUffd(control::kOpTrackWrites, why); }

int ControlClient::copyOnWrite(kj::String& why) { return askForUffd(control::kOpCopyOnWrite, why); }

int ControlClient::askForUffd(uint32_t op, kj::String& why) {
  control::Request req{control::kMagic, control::kVersion, op, getpid()};
  if (::write(fd_, &req, sizeof(req)) != sizeof(req)) {
    why = kj::str("cannot ask process ", pid_, " for write tracking: ", strerror(errno));
    return -1;
  }
  struct pollfd p = {fd_, POLLIN, 0};
  if (poll(&p, 1, 10000) != 1) {
    why = kj::str("process ", pid_, " did not answer the write-tracking request");
    return -1;
  }
  control::Reply reply{};
  int fd = -1;
  ssize_t n = control::receiveFd(fd_, &reply, sizeof(reply), &fd);
  if (n == sizeof(reply) && reply.magic == control::kMagic && reply.status == control::kOk && fd >= 0) return fd;
  if (fd >= 0) ::close(fd);
  if (n == sizeof(reply) && reply.status == control::kNoTracking && op == control::kOpCopyOnWrite) {
    why = kj::str("the job cannot make a userfaultfd that hands kernel-mode faults over (it needs "
                  "CAP_SYS_PTRACE, vm.unprivileged_userfaultfd = 1 or access to /dev/userfaultfd): ",
                  strerror(static_cast<int>(reply.reserved)));
  } else if (n == sizeof(reply) && reply.status == control::kNoTracking) {
    why = kj::str("no write tracking: the job cannot make a userfaultfd with asynchronous write protection, "
                  "which needs Linux 6.7 or later and userfaultfd not forbidden: ",
                  strerror(static_cast<int>(reply.reserved)));
  } else if (n == sizeof(reply) && reply.status == control::kBadRequest) {
    why = kj::str("no write tracking: process ", pid_, " runs a libmig without it");
  } else {
    why = kj::str("process ", pid_, " gave no valid answer to the write-tracking request");
  }
  return -1;
}

kj::Array<pid_t> ControlClient::bornAwayChildren() {
  send(control::kOpBornAwayChildren);
  struct pollfd p = {fd_, POLLIN, 0};
  struct {
    control::Reply reply;
    pid_t pids[1024];
  } msg{};
  ssize_t n = poll(&p, 1, 10000) == 1 ? ::read(fd_, &msg, sizeof(msg)) : -1;
  const auto got = static_cast<size_t>(n > 0 ? n : 0);
  if (got < sizeof(msg.reply) || msg.reply.magic != control::kMagic || msg.reply.status != control::kOk ||
      got != sizeof(msg.reply) + msg.reply.reserved * sizeof(pid_t)) {
    fail(kj::str("process ", pid_, " gave no valid answer when asked for its children born away"));
  }
  return kj::heapArray<pid_t>(msg.pids, msg.reply.reserved);
}

void ControlClient::resume() {
  send(control::kOpResume);
  frozen_ = false;
}

void ControlClient::becomeDeputy(kj::ArrayPtr<const kj::StringPtr> argv) {
  sendDeputy(control::kOpBecomeDeputy, argv);
}

void ControlClient::becomeDeputyOnClose(kj::ArrayPtr<const kj::StringPtr> argv) {
  sendDeputy(control::kOpBecomeDeputyOnClose, argv);
}

int ControlClient::tryDeputy(kj::ArrayPtr<const kj::StringPtr> argv, int timeoutMs, bool stopped) {
  sendDeputy(control::kOpTryDeputy, argv);
  frozen_ = true;  // until the exec is known to have happened
  if (stopped) kill(realPid_, SIGCONT);  // the command is there when its shim goes on
  struct pollfd p = {fd_, POLLIN, 0};
  if (poll(&p, 1, timeoutMs) != 1) return ETIMEDOUT;
  control::Reply reply{};
  ssize_t n = ::read(fd_, &reply, sizeof(reply));
  if (n == 0) {  // the connection ended: closed by the exec (or the process is gone)
    frozen_ = false;
    return 0;
  }
  if (n == sizeof(reply) && reply.magic == control::kMagic && reply.status == control::kDeputyExecFailed) {
    return reply.reserved != 0 ? static_cast<int>(reply.reserved) : EIO;
  }
  return EPROTO;
}

int ControlClient::probeDeputy(kj::ArrayPtr<const kj::StringPtr> argv, int timeoutMs) {
  sendDeputy(control::kOpProbeDeputy, argv);
  struct pollfd p = {fd_, POLLIN, 0};
  if (poll(&p, 1, timeoutMs) != 1) return ETIMEDOUT;
  control::Reply reply{};
  ssize_t n = ::read(fd_, &reply, sizeof(reply));
  if (n != sizeof(reply) || reply.magic != control::kMagic) return EPROTO;
  if (reply.status == control::kOk) return 0;
  if (reply.status == control::kDeputyExecFailed) return reply.reserved != 0 ? static_cast<int>(reply.reserved) : EIO;
  return EPROTO;  // kBadRequest: a libmig without the probe
}

void ControlClient::hangUp() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void ControlClient::sendDeputy(uint32_t op, kj::ArrayPtr<const kj::StringPtr> argv) {
  kj::Vector<char> args;
  for (auto a : argv) {
    args.addAll(a);
    args.add('\0');
  }
  if (args.size() > control::kMaxDeputyArgs) fail(kj::str("deputy command line too long"));
  send(op);
  if (::write(fd_, args.begin(), args.size()) != static_cast<ssize_t>(args.size())) {
    fail(kj::str("cannot send the deputy's command line: ", strerror(errno)));
  }
  frozen_ = false;
}

void ControlClient::exitProcess() {
  send(control::kOpExit);
  frozen_ = false;
}

}  // namespace mig::migctl
