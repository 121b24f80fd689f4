// Which host a process group named by a moved process's wait4 or waitid is on (issue
// 12): the groups of its children born here are this host's; its own group is both
// (its deputy holds its place in it at home, with the children it forked there, and
// its children born here are in its group here); any other group is home's. A child
// born here has every group here. Kept apart from the handler (sigsys_handler.cc) so
// the rule is tested alone.
#pragma once

#include <sys/types.h>

namespace mig::forward {

enum class GroupSide {
  Here,  // the wait runs here, for the group's real number
  Both,  // the caller's own group: here as group 0, at home as the number asked
  Home,  // the wait goes home
};

// `pgid` > 1, as the application names it (virtual). `isChildHere(pgid)`: a child born
// here has that virtual PID; `isOwnAtHome(pgid)`: home says it is the caller's group
// (a round trip: asked last, and not at all for its own PID).
template <typename IsChildHere, typename IsOwnAtHome>
GroupSide groupSide(pid_t pgid, bool bornAway, pid_t vpid, IsChildHere isChildHere, IsOwnAtHome isOwnAtHome) {
  if (bornAway || isChildHere(pgid)) return GroupSide::Here;
  if (pgid == vpid || isOwnAtHome(pgid)) return GroupSide::Both;
  return GroupSide::Home;
}

}  // namespace mig::forward
