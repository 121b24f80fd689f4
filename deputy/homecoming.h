// A hop back home (docs/design.md "A hop back home"): the job, moved away and now
// sent to its home host again, is restored into its deputy's process, so it runs
// local again with the PID, parent, terminal and fds it has always had there, and
// nothing is forwarded any more. A tree coming home whole does this in every member's
// deputy at once, after every member was frozen (shadow/tree_homecoming.h), all or none:
// each restorer waits at its tree's gate until every member can run (shadow/home_gate.h).
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
//   3. writes what it needs to be the deputy again (ComeBack) into a second memfd,
//      closes its own fds but its direct link's listening socket, and execs `migctl
//      restart IMAGE --homecoming --come-back FD` in place, which keeps the fds the
//      deputy holds (the job's home fds, at the job's numbers), makes the job's other
//      fds again and runs it (migctl/restart_command.cc).
// A failure of the restart, or of its restorer up to its last step that can fail (the
// restorer closes this table and the listener only then), execs
// `mig-deputy --again-from FD --carried-fd N`: the deputy again, with the same job fds,
// the answers it had given (the carried table), the same direct link ticket (the
// listening socket inherited: the relay resumes its link) and registered again with
// shadowd, which tells the job's host to resume it there (shadow/node_service.cc).
#pragma once

#include <kj/array.h>
#include <kj/string.h>

#include <cstdint>

namespace mig::deputy {

// What makes the deputy again after a failed homecoming restart.
struct ComeBack {
  kj::String deputy;  // its program (/proc/self/exe as it ran)
  uint64_t jobId = 0;
  kj::String socket;  // home shadowd's
  kj::Array<kj::byte> token;
  int linkFd = -1;  // the direct link's listening socket (resumable ticket), or -1
  kj::Array<kj::byte> linkKey;
  bool linkPlaintext = false;
  uint64_t linkLostAfterMs = 0;
  kj::Array<kj::byte> record;  // the HomeRecord shadowd last gave it, flat; empty: none
};

// Lines "KEY VALUE" (numbers, hex), then the record's bytes. The first two lines are
// what `migctl restart` and the restorer read of it: "deputy PROGRAM" and "link FD ..."
// (the listener, which the restart renumbers when it moves it out of the job's way, and
// the restorer closes when it gives the deputy up).
kj::Array<kj::byte> encodeComeBack(const ComeBack& c);
// Throws (one line) on a table that is not one.
ComeBack decodeComeBack(kj::ArrayPtr<const kj::byte> bytes);

// Step 2 and 3. Throws if a table cannot be made (nothing closed yet); a failed exec
// ends the process as if killed (the job is lost; the reason goes to `logPath`).
// Without `comeBack` (a sender that did not keep the job) a failed restart does too.
// `fault`: hop:home-restore:ACTION for the restart (shadow/hop_fault.h), or empty.
// `gate`: a tree's hop home, where the restorer waits for its tree (shadow/home_gate.h).
void execHomecomingRestart(kj::StringPtr migctl, kj::StringPtr image, kj::StringPtr logPath,
                           kj::ArrayPtr<const kj::byte> carried, kj::Maybe<ComeBack> comeBack, kj::StringPtr fault,
                           kj::StringPtr gate);

}  // namespace mig::deputy
