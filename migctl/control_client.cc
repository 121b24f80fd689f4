// See control_client.h.
#include "migctl/control_client.h"

#include "image/image_error.h"

#include <kj/vector.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
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
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), offsetof(sockaddr_un, sun_path) + len) != 0) {
    int err = errno;
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
  if (getsockopt(fd_, SOL_SOCKET, SO_PEERCRED, &cred, &credLen) == 0 && cred.pid > 0) realPid_ = cred.pid;
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

void ControlClient::resume() {
  send(control::kOpResume);
  frozen_ = false;
}

void ControlClient::becomeDeputy(kj::ArrayPtr<const kj::StringPtr> argv) {
  kj::Vector<char> args;
  for (auto a : argv) {
    args.addAll(a);
    args.add('\0');
  }
  if (args.size() > control::kMaxDeputyArgs) fail(kj::str("deputy command line too long"));
  send(control::kOpBecomeDeputy);
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
