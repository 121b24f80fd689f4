// The deputy's start at a hop's commit from home (docs/design.md "One hop"), made
// sure of so that a job never runs away with nobody at home serving its calls and
// holding its PID for its parent:
//   - before the freeze, a trial start (`mig-deputy --check`, a process of its own)
//     proves that the program starts here and reaches shadowd: if not, the hop is
//     refused with nothing frozen;
//   - at the commit the job's shim tries the exec (control kOpTryDeputy): one that
//     fails leaves the job intact, to resume here;
//   - after the commit (outside the freeze) the deputy says on a socket of the
//     sender's (DeputyReady) that it has registered with shadowd; one that died first
//     is seen and said (home's watch on the job's process ends the job away).
#pragma once

#include <kj/string.h>

#include <sys/types.h>

namespace mig::shadow {

// Runs `deputy --check --socket SOCKET` and waits for it (at most timeoutMs): "" if it
// started and reached shadowd, else why not (its own line, or how it ended).
kj::String tryDeputyStart(kj::StringPtr deputy, kj::StringPtr socket, int timeoutMs);

// A listening socket (abstract, named after this process) on which the deputy, once
// registered, says so (deputy/main.cc --ready): only the job's process is heard.
class DeputyReady {
 public:
  DeputyReady();  // throws (one line) if it cannot listen
  ~DeputyReady();
  DeputyReady(const DeputyReady&) = delete;
  DeputyReady& operator=(const DeputyReady&) = delete;

  // The name to pass as --ready (without the leading NUL).
  kj::StringPtr name() const { return name_; }

  enum class Outcome { REGISTERED, DIED, SLOW };
  // Waits for process `pid` (the job's, now the deputy) to say it registered: DIED if
  // it ended first, SLOW if it did neither within timeoutMs (it lives: it goes on
  // trying to register, as with a restarted shadowd).
  Outcome wait(pid_t pid, int timeoutMs);

 private:
  int fd_ = -1;
  kj::String name_;
};

}  // namespace mig::shadow
