// The end of a process shadowd watches by its pidfd (a deputy at home, a job that came
// home and runs from its image). A pidfd also wakes while its process lives on: an exec
// from a thread other than the first makes that thread group's leader a zombie for a
// moment (the exec's de_thread). So an end is judged by a second look a moment later:
// a process that has ended stays ended (a zombie, or reaped).
#pragma once

#include "shadow/daemon.h"

#include <kj/function.h>

namespace mig::shadow {

// Whether process `pid`, which `pidfd` refers to, looks ended now: reaped (signal 0
// refused) or a zombie. True for a moment during a non-first thread's exec too.
bool looksEnded(int pidfd, pid_t pid);

// How long after a wake-up, or a look that saw it ended, the second look comes.
inline constexpr uint64_t kSecondLookMs = 50;

// Calls `ended` once, when process `pid` (`pidfd`) has ended for sure: it looked ended
// at a wake-up and again kSecondLookMs later. Wake-ups while it lives are let go.
void watchProcessEnd(Daemon& d, pid_t pid, kj::AutoCloseFd pidfd, kj::Function<kj::Promise<void>()> ended);

}  // namespace mig::shadow
