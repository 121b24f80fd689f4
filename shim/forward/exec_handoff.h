// Forwarding across exec. A migrated process (the job, or a child it forked away
// from home) that execs a program must go on forwarding in it: the new program's
// files, terminal and parent are still at home, and its shim starts with nothing.
// So the SIGSYS handler runs execve/execveat itself: it writes the process's
// forwarding Config (with the PIDs and the write numbering it has) into a memfd
// that the exec keeps, names it in the new program's environment, and the new
// program's shim takes it over before main (takeHandoff). A failed exec leaves
// nothing behind.
#pragma once

#include "shim/forward/trapped_call.h"

namespace mig::forward {

inline constexpr char kHandoffEnv[] = "MIG_FORWARD_HANDOFF_FD";

// execve or execveat with the handoff added (in the SIGSYS handler).
long execWithHandoff(TrappedCall& c, const ucontext_t* uc);

// At the shim's start: if this program was exec'd by a forwarding process, loads its
// Config (PIDs into the runtime's pending ones, for initProcess) and returns true;
// the environment variable is removed either way. Then activateHandoff(), after the
// runtime is set up, turns forwarding on for the process and this thread.
bool takeHandoff();
void activateHandoff();

}  // namespace mig::forward
