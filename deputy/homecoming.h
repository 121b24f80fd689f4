// A hop back home (docs/design.md "A hop back home"): the job, moved away and now
// sent to its home host again, is restored into its deputy's process, so it runs
// local again with the PID, parent, terminal and fds it has always had there, and
// nothing is forwarded any more. A tree coming home whole does this in every member's
// deputy at once, after every member was frozen (shadow/tree_homecoming.h).
//
// The hop is committed first (the job's process away has ended; shadow/send_command.cc),
// then home's shadowd calls Deputy.becomeJob. The deputy
//   1. takes no call any more and cancels those that wait on a worker (a read, an
//      accept, a wait): each either ended with what it did, whose answer it keeps,
//      or did nothing and is never answered (CallRunner::stopForHomecoming);
//   2. writes every thread's last answer into a memfd (shim/forward/carried_replies.h):
//      a thread that was waiting for one when the job was frozen sends its call again
//      where it resumes, and back home it takes that answer instead of running the
//      call twice; a call the deputy never ran runs there, once;
//   3. closes its own fds and execs `migctl restart IMAGE --homecoming` in place,
//      which keeps the fds the deputy holds (the job's home fds, at the job's numbers),
//      makes the job's other fds again and runs it (migctl/restart_command.cc).
#pragma once

#include <kj/array.h>
#include <kj/string.h>

namespace mig::deputy {

// Step 2 and 3. Throws if the table cannot be made (nothing closed yet); a failed exec
// ends the process as if killed (the job is lost; the reason goes to `logPath`).
void execHomecomingRestart(kj::StringPtr migctl, kj::StringPtr image, kj::StringPtr logPath,
                           kj::ArrayPtr<const kj::byte> carried);

}  // namespace mig::deputy
