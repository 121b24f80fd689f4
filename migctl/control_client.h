// migctl's side of the control conversation with a process's shim
// (shim/control_protocol.h): connect, ask for a checkpoint, send the verdict.
#pragma once

#include "shim/control_protocol.h"

#include <kj/array.h>
#include <kj/string.h>
#include <sys/types.h>

namespace mig::migctl {

class ControlClient {
 public:
  // Connects to the shim of process `pid`; throws a one-line reason (no such
  // process, not running under mig, permission, another user's process: the
  // kernel's SO_PEERCRED and /proc real uid, not what the process says) when it cannot.
  explicit ControlClient(pid_t pid);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // The process's kernel PID: `pid` itself, or, for a restored process reached by
  // its virtual PID, the PID it runs under now (what /proc knows it by).
  pid_t realPid() const { return realPid_; }
  pid_t pid() const { return pid_; }  // as the user named it

  // Pre-copy: asks the shim for a userfaultfd made in the process (write tracking,
  // resources/dirty_pages.h) while it runs on. Returns the fd, or -1 with the reason in
  // `why`. The shim ends this connection after it: use a new ControlClient to freeze.
  int trackWrites(kj::String& why);
  // Concurrent checkpoint: the same for a userfaultfd with synchronous write protection
  // (resources/copy_before_write.h).
  int copyOnWrite(kj::String& why);

  // The real PIDs of the children born away the process has not reaped (its table,
  // shim/forward/child_pids.h). Throws when it gives no valid answer. The shim ends
  // this connection after it.
  kj::Array<pid_t> bornAwayChildren();

  // Parks every thread of the process; returns where its checkpoint block is.
  control::Reply freeze(int timeoutSeconds);
  // The same in two halves, so the members of a tree are asked all at once and
  // park at the same time: request, then await each answer.
  void requestFreeze();
  control::Reply awaitFreeze(int timeoutSeconds);
  // Lets the threads run again, or ends the process (after a complete image).
  void resume();
  void exitProcess();
  // Exec `argv` (the deputy) in place of the process, keeping its PID and fds.
  void becomeDeputy(kj::ArrayPtr<const kj::StringPtr> argv);
  // The same, the exec once this connection ends (hangUp, or this process's end): a
  // tree's commit at home, whose deputies start once the destination runs the members.
  void becomeDeputyOnClose(kj::ArrayPtr<const kj::StringPtr> argv);
  // The same before the hop's commit: 0 once the exec happened (the connection ended),
  // else why it did not (errno; ETIMEDOUT: no answer); the process is then still the
  // frozen job, to resume.
  // stopped: the process is stopped (SIGSTOP) and is continued once the command is sent.
  int tryDeputy(kj::ArrayPtr<const kj::StringPtr> argv, int timeoutMs, bool stopped = false);
  // While the process runs on: whether its exec of `argv` (the deputy) would succeed,
  // tried in a child of it that ends at once (a hop whose deputy starts after the
  // commit proves it before). 0, or why not (errno; ETIMEDOUT: no answer). The shim
  // ends this connection after it.
  int probeDeputy(kj::ArrayPtr<const kj::StringPtr> argv, int timeoutMs);
  void hangUp();

 private:
  void send(uint32_t op);
  void sendDeputy(uint32_t op, kj::ArrayPtr<const kj::StringPtr> argv);
  int askForUffd(uint32_t op, kj::String& why);
  pid_t pid_;
  pid_t realPid_;
  int fd_ = -1;
  bool frozen_ = false;
};

}  // namespace mig::migctl
