// Children a migrated process forks away from home get virtual PIDs from its home's
// PID space: numbers above the kernel's largest pid_max (4194304), which no real
// process at home can have, derived from the job's own home PID (which home keeps
// for it: its deputy holds it) and a slot. fork's result, wait4/waitid and kill
// speak these numbers; the kernel's real ones never reach the application. A PID
// that is neither the process itself nor one of these children is a home PID: kill
// and wait towards it go home (sigsys_handler.cc).
//
// Async-signal-safe: a fixed table of atomics in State, no locks.
#pragma once

#include <sys/types.h>

namespace mig::forward {

inline constexpr pid_t kAwayPidBase = 4194304;  // PID_MAX_LIMIT on 64-bit Linux

// Before a fork: a slot and its virtual PID for the child, or 0 when every slot is
// taken (the child then goes by its real PID).
pid_t reserveChildPid();
// After the fork, in the parent: the child's real PID (or the fork failed: real < 0
// gives the slot back).
void bindChildPid(pid_t vpid, pid_t real);
// In the new child: it is `vpid` now, and its parent's children are not its own.
void becomeChild(pid_t vpid);

// A child's real PID, by its virtual PID; 0 if `vpid` names no child of ours.
pid_t childRealPid(pid_t vpid);
// A child's virtual PID, by its real PID; `real` itself if it is not one of ours.
pid_t childVirtualPid(pid_t real);
// Is `real` one of our children's real PIDs?
bool isChildRealPid(pid_t real);
// Has this process children born here (that it has not reaped)?
bool haveChildren();
// The child with this real PID was reaped: its slot is free again.
void forgetChild(pid_t real);

}  // namespace mig::forward
