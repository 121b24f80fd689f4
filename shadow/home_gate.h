// A tree's hop home, all or none (issue 12; docs/design.md "Moving a process tree", back
// home): the point of no return of the whole tree, at home. Each member's deputy becomes
// its member on its own (Deputy.becomeJob), so one member's restore could fail after
// another's already runs. Instead every member's restorer, at its last step that can fail,
// says 'R' on a connection to this gate (`migctl restart --home-gate`, restore/restorer.cc
// treeGo) and waits; once every member of the hop said it, each gets 'G' and runs. A
// member that fails first (its connection closes before 'R', or its deputy registers
// again), or no go within the restore limit, closes every connection: each restorer comes
// back as its deputy, and the sender, which kept every member frozen, resumes the tree
// where it was. The gate listens on an abstract Unix socket named after the hop (home's
// network namespace, no file to clean up) and takes only the members' processes (their
// PIDs at home, SO_PEERCRED).
#pragma once

#include <kj/async.h>
#include <kj/string.h>

#include <cstdint>
#include <sys/types.h>

namespace mig::shadow {

class Daemon;

// The gate of hop `hop` (the sender's number, the same on every member's commit) with
// `members` members, made by the first member's commit; `pid` (the member's PID at home)
// joins it. Returns the socket's name for Deputy.becomeJob's `gate` ("@NAME": abstract),
// or null when the hop was called off already (the member stays its deputy). Throws (one
// line) if it cannot listen.
kj::Maybe<kj::String> joinHomeGate(Daemon& d, uint64_t hop, uint32_t members, pid_t pid);

// A member of hop `hop` failed before the go (its deputy came back, or its restore
// ended): every member's restorer comes back. Nothing if the gate is gone or already
// went.
void callOffHomeGate(uint64_t hop, kj::StringPtr why);

}  // namespace mig::shadow
