// Turning forwarding on for the process (not yet for any thread: each thread turns
// syscall user dispatch on for itself, see sud.h).
#pragma once

namespace mig::forward {

// Reads the Config at the start of fd into the process's forwarding state; false when
// it cannot be read or is not a Config of this layout.
bool loadConfig(int fd);

// With the Config loaded: forgets the old connections, takes over the signals
// (signals.h) and sets the status to active. Process-wide; before the application's
// threads are released.
void activateProcess();

// Dispatch on for the calling thread, with its system calls blocked (trapped), if
// forwarding is active. Returns whether it is on.
bool dispatchThisThread();

}  // namespace mig::forward
