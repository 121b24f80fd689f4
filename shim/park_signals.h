// What an application signal that came while a thread was parked for a checkpoint
// does to the system call the checkpoint signal interrupted.
//
// Parked, the thread blocks every signal, so the application's signal waits and is
// delivered only as the thread goes on, after the kernel has already settled the call
// for the checkpoint signal: restarted (its handler has SA_RESTART: F_SETLKW, flock,
// read, wait4...), or ended with EINTR, which the wrappers of interrupted_calls.cc take
// for the checkpoint's and make again (poll, nanosleep...). Without mig the
// application's signal would have interrupted the call itself: a handler without
// SA_RESTART ends a restartable call with EINTR, and any handler ends the others. So as
// the thread goes on, in place (checkpoint.cc) or restored (forward/resume.cc), the call
// ends that way. Raw system calls only, no allocation: it runs in the checkpoint
// handler and before a restored thread is back in its context.
#pragma once

#include <ucontext.h>

namespace mig::shim {

// `uc`: the context the checkpoint signal saved, which the thread returns to.
void settleInterruptedCall(ucontext_t* uc);

}  // namespace mig::shim
