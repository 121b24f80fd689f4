// The fd table of a process that forwards through the job's deputy but is not the
// job: a child the job forked away from home, or a program such a process (or the
// job) started with exec. The deputy's fd table mirrors the job's alone, so such a
// process keeps its own: which of its fds are home fds and under which number the
// deputy holds each (Config::homeFd), and which home files it opened itself
// (Config::ownedFds: the deputy holds them high, apart from the job's numbers, and
// closes them when this process does). Its dup, dup2 and close act here only; its
// forwarded calls name the deputy's numbers.
//
// Runs in the SIGSYS handler: async-signal-safe.
#pragma once

#include "shim/forward/trapped_call.h"

namespace mig::forward {

// Does this process keep its own fd table (Config::ownTable)?
bool ownTable();

// The deputy's number for this process's home fd `fd`.
int32_t homeFdOf(int32_t fd);

// Rewrites the Fd arguments of a call about to go home into the deputy's numbers.
void toHomeFds(const rsc::Row& row, int64_t args[6]);

// The fd-table calls of a process with its own table (fd_mirror.cc sends them here).
long newOwnFd(const rsc::Row& row, const int64_t args[6], bool cloexec);
long closeOwn(int32_t fd);
// Forgets fd as a home fd (its local side stays); closes its home side if this
// process opened it.
void dropHomeFd(int32_t fd);
long dupOwn(const TrappedCall& c);
long fcntlDupOwn(const TrappedCall& c);

// This process stops mirroring the deputy's table: from now on it keeps its own.
void takeOwnTable();

// In a new child of a process with its own table, once it can forward: the home
// files its parent opened (and owns) get copies at home that the child owns, so the
// child's close (or exec's close-on-exec) closes its copy, not its parent's file.
void adoptInheritedHomeFds();

}  // namespace mig::forward
