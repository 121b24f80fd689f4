// migctl's side of the control conversation with a process's shim
// (shim/control_protocol.h): connect, ask for a checkpoint, send the verdict.
#pragma once

#include "shim/control_protocol.h"

#include <sys/types.h>

namespace mig::migctl {

class ControlClient {
 public:
  // Connects to the shim of process `pid`; throws a one-line reason (no such
  // process, not running under mig, permission) when it cannot.
  explicit ControlClient(pid_t pid);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Parks every thread of the process; returns where its checkpoint block is.
  control::Reply freeze(int timeoutSeconds);
  // Lets the threads run again, or ends the process (after a complete image).
  void resume();
  void exitProcess();

 private:
  void send(uint32_t op);
  pid_t pid_;
  int fd_ = -1;
  bool frozen_ = false;
};

}  // namespace mig::migctl
