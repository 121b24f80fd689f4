// Fault injection for the steps of a hop, off unless MIG_FAULT=hop:STEP:ACTION is in
// shadowd's environment (tests/cluster/hop_faults.sh; like CRIU's CRIU_FAULT). shadowd
// checks the value at start and passes it to the `migctl send` it runs, so each side
// fails where the step runs: a sender step in the hop's sender (the process holding
// the frozen job on the source host), a receiver step in the destination's shadowd.
// ACTION is `crash` (SIGKILL of that process: no clean-up, as a power cut would do)
// or `error` (the step fails with one line, as a full disk or a refused call would).
// The steps, in the order a hop passes them, are kHopSteps.
#pragma once

#include <kj/string.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace mig::shadow {

inline constexpr const char* kHopSteps[] = {
    "deputy-start",    // from home, before the freeze: the deputy's trial start (mig-deputy
                       // --check, shadow/deputy_start.h), before it reaches shadowd
    "send-login",      // sender: logged in to the destination, nothing asked yet
    "recv-ticket",     // destination: the job's ticket arrived, no byte of it yet
    "recv-image",      // destination: the first bytes of the image arrived
    "send-frozen",     // sender: the job is frozen and its whole image sent
    "recv-done",       // destination: the image is complete, the restore not begun
    "home-restart",    // destination, a hop home: the checks of the deputy's restart, in
                       // shadowd's child (migctl/restart_command.cc checkHomecomingWork)
    "recv-prepared",   // destination: restored up to "ready, not running", not said yet
    "send-prepared",   // sender: the destination is ready; the job not given up yet
    "deputy-exec",     // sender, from home: the job's exec of its deputy at the commit
                       // (error: the program is not there; crash: the job's process is
                       // killed as it execs)
    "send-committed",  // sender: the job given up here (deputy / exited), commit not sent
    "recv-commit",     // destination: commit arrived, the job not released yet
    "recv-released",   // destination: the job released, its answer not sent
    "recv-become",     // destination, a hop home: the deputy went to become the job (its
                       // restart runs), the commit not answered yet
    "home-restore",    // destination, a hop home after its commit: the deputy's restart,
                       // before it changes the process (migctl/restart_command.cc; the
                       // deputy comes back, as at the next three)
    "home-files",      // ... the job's state and fds in place, the restorer not run yet
    "home-exec",       // ... the fd limit set, just before the restorer's exec
    "home-restorer",   // ... in the restorer, its last step that can fail (restore/restorer.cc)
    "send-postcopy",   // sender (post-copy): the job runs there, its pages copied to the
                       // spool (page_copy.h), not all fetched yet
};

enum class HopFaultAction { NONE, CRASH, ERROR };

struct HopFault {
  kj::String step;
  HopFaultAction action = HopFaultAction::NONE;
};

// Parses MIG_FAULT's value. Values for other parts (e.g. the shim's "deputy-watch")
// are not ours: NONE. A "hop:" value that names no step or action: `why` says so.
inline HopFault parseHopFault(const char* value, kj::String& why) {
  HopFault f;
  if (value == nullptr || strncmp(value, "hop:", 4) != 0) return f;
  const char* step = value + 4;
  const char* colon = strrchr(step, ':');
  if (colon == nullptr) {
    why = kj::str("MIG_FAULT=", value, ": expected hop:STEP:crash or hop:STEP:error");
    return f;
  }
  auto stepText = kj::heapString(step, colon - step);
  bool known = false;
  for (const char* s : kHopSteps) known = known || stepText == s;
  if (!known) {
    kj::String all = kj::str("");
    for (const char* s : kHopSteps) all = kj::str(all, all.size() > 0 ? ", " : "", s);
    why = kj::str("MIG_FAULT=", value, ": no hop step '", stepText, "' (steps: ", all, ")");
    return f;
  }
  if (strcmp(colon + 1, "crash") == 0) f.action = HopFaultAction::CRASH;
  else if (strcmp(colon + 1, "error") == 0) f.action = HopFaultAction::ERROR;
  else {
    why = kj::str("MIG_FAULT=", value, ": the action is crash or error, not '", colon + 1, "'");
    return f;
  }
  f.step = kj::mv(stepText);
  return f;
}

// The fault this process was started with (read once; shadowd refused a bad value).
inline const HopFault& hopFault() {
  static const HopFault f = [] {
    kj::String why;
    return parseHopFault(getenv("MIG_FAULT"), why);
  }();
  return f;
}

// At step `step`: crash or fail here if MIG_FAULT says so; nothing otherwise. `fail`
// is the caller's way to fail a step (kj exception with one line).
template <typename Fail>
inline void hopFaultPoint(kj::StringPtr step, Fail&& fail) {
  const HopFault& f = hopFault();
  if (f.action == HopFaultAction::NONE || f.step != step) return;
  if (f.action == HopFaultAction::CRASH) {
    raise(SIGKILL);
    for (;;) pause();
  }
  fail(kj::str("injected fault (MIG_FAULT=hop:", step, ":error)"));
}

}  // namespace mig::shadow
