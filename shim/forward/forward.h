// System call forwarding after a migration: what the rest of the shim calls.
//
// How a migrated process starts forwarding:
//   1. `migctl restart --migrated` writes a Config (forward_config.h) into a memfd and
//      sets its number on the restore plan (Header::configFd); the restorer passes it
//      on in ResumeInfo::configFd.
//   2. The restorer resumes every thread through mig_resumed_thread (the plan's
//      resumeEntry, which the checkpoint records): each application thread turns
//      syscall user dispatch on for itself and waits.
//   3. The control thread, back in runCheckpoint, calls onRestored: it reads the
//      Config, installs the SIGSYS handler and releases the threads, whose system
//      calls from then on reach sigsys_handler.cc.
// Without a Config (a plain restart) the threads simply continue.
#pragma once

#include <cstdint>

namespace mig::forward {

// On the control thread while every other thread is parked for a checkpoint: drops
// the threads' relay connections (they are not part of the image) and re-arms the
// word that restored threads wait on.
void prepareCheckpoint();

// On the control thread of a restored process, before its other threads run:
// activates forwarding from the Config in configFd (which it closes), or, with
// configFd < 0, makes sure forwarding is off; then releases the threads.
void onRestored(int configFd);

}  // namespace mig::forward

// The restorer's last step for each thread (plan::Header::resumeEntry): see above.
// Ends with rt_sigreturn into the thread's saved context.
extern "C" [[noreturn]] void mig_resumed_thread(uint64_t ucontextAddr);
