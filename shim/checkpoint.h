// Parking every thread of the process in the checkpoint signal handler, so migctl
// can read a consistent image of it, then releasing them, ending the process, or
// (in a restored process) carrying on after the restorer brought it back.
#pragma once

#include "shim/control_protocol.h"

#include <cstddef>

namespace mig::shim {

void installCheckpointHandler();

// Runs on the control thread for one checkpoint request on connection `conn`.
// Returns once the threads run again (resumed, or restored in a new process).
// Returns true when this process is a freshly restored one.
bool runCheckpoint(int conn, const control::Request& request);

// kOpProbeDeputy: tries the exec of the deputy (kOpBecomeDeputy's args, `len` bytes)
// in a child of this process that ends at once, while the job runs on: 0 if it would
// start from here (this process's credentials, root, limits and environment), else
// the errno of its exec (ENOEXEC: it exec'd but could not run).
int probeDeputy(char* args, size_t len);

}  // namespace mig::shim
