// Children a migrated process forks away from home get virtual PIDs from its home's
// PID space: numbers above the kernel's largest pid_max (4194304), which no real
// process at home can have: kAwayPidBase + the child's real PID here. Real PIDs of
// living (or unreaped) processes of one host are distinct, so every process of the
// job's tree here has its own number, however deep (a number derived from the
// parent's would have to shrink somewhere to stay under 2^31: gcc -flto's children
// five levels down once got their parent's own number, and its wait for them said
// ECHILD). fork's result, wait4/waitid and kill speak these numbers; the kernel's
// real ones never reach the application. A PID that is neither the process itself
// nor one of these children is a home PID: kill and wait towards it go home
// (sigsys_handler.cc).
//
// Async-signal-safe: a fixed table of atomics in State, no locks.
#pragma once

#include <cstdint>
#include <sys/types.h>

namespace mig::forward {

inline constexpr pid_t kAwayPidBase = 4194304;  // PID_MAX_LIMIT on 64-bit Linux

// Before a fork: a slot in the table of children (a non-zero reservation), or 0 when
// every slot is taken (the child then goes by its real PID).
pid_t reserveChildPid();
// After the fork, in the parent: the child's real PID (or the fork failed: real < 0
// gives the slot back). Returns what the application sees: the child's virtual PID,
// or `real` itself without a reservation or on failure.
pid_t bindChildPid(pid_t reservation, pid_t real);
// In the new child: `reservation` is its parent's (0: none, it goes by its real PID);
// its parent's children are not its own.
void becomeChild(pid_t reservation);

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
// The real PIDs of the children in the table (at most `max`, into `out`); their count.
uint32_t listChildren(pid_t* out, uint32_t max);

// Whether a wait for any child that found none ready here (WNOHANG's 0, or ECHILD)
// must ask home too: the job's children forked at home before it left (a tree's
// members that moved with it are its deputy's children there) end at home, and a
// poll that looked only here would never see them while a child born here lives
// (bash's SIGCHLD loop, a job server's waitpid(-1, WNOHANG)). A child born here has
// no children at home; nor has a process home answered ECHILD once.
bool mayHaveChildrenAtHome();
// Home answered ECHILD to a wait for any child: asked no more (until the process is
// home again: a hop home forgets it, activation.cc).
void noChildrenAtHome();

}  // namespace mig::forward
