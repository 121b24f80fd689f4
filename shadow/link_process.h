// A job's link process (`mig-link`, link_main.cc): one per job that migrated in. It
// runs the job's restart as its child, hosts the job's call relay (JobCalls and the
// job's own Unix socket) and holds the job's direct link home, so that this shadowd is
// not in the job's data path: shadowd killed or restarted, the job's calls still go
// home and its end is still told home (by the link process).
//
// This is shadowd's side of it: a control socket (the link process's fd 4) that
// carries one line per event, both ways:
//   link -> shadowd: "pid P"        the restart runs as P (0: it could not be started)
//                    "running"      the job's first call connection arrived
//                    "problems T"   answer to "check" (T: one line, empty: none)
//                    "counts C O I" every second while calls go: C calls forwarded since
//                                    the last report, O bytes out, I in (the metrics)
//                    "ended S C O I" the job's process ended with wait status S; the
//                                    counts since the last report
//   shadowd -> link: "check"        Node.setupCheck: what failed of its setup
//                    "tell"/"left"  answer to "ended": tell home the job ended, or not
//                                    (it left this host: its sender ends it)
// On "tell" the link process waits for the job's last writes to run at home, then
// tells home; on "left" it ends at once. Without shadowd (the socket closed) it tells
// home by itself, only of a job that ran.
//
// A restarted shadowd learns its guests back from their link processes: one whose control
// socket closed while its job runs connects to shadowd's local socket again (with a
// backoff) and announces the job (Local.relearnGuest: its id, token, home, PIDs, command,
// counts so far); shadowd checks that the caller is that job's link process (SO_PEERCRED:
// same user, its PID, the job's parent) and that home does not refuse the token, rebuilds
// the guest record, and from then on the same control lines go both ways as
// GuestControl.write calls on that connection (controlOverRpc).
#pragma once

#include "shadow/child_process.h"
#include "shadow/mig.capnp.h"

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/vector.h>

namespace mig::shadow {

class Daemon;

// One line at a time over a stream (the control socket, both ends).
class LineChannel {
 public:
  explicit LineChannel(kj::Own<kj::AsyncIoStream> stream) : stream_(kj::mv(stream)) {}
  // The next line without its newline; null at the end of the stream.
  kj::Promise<kj::Maybe<kj::String>> readLine();
  // Queued: lines go out in order; a closed peer is not an error here.
  void writeLine(kj::StringPtr line);
  // The lines queued so far written (or the other end gone); the channel is done with.
  kj::Promise<void> finish() { return kj::mv(writing_).attach(kj::mv(stream_)); }

 private:
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Vector<char> buffered_;
  char chunk_[512];
  kj::Promise<void> writing_ = kj::READY_NOW;
};

// The control lines over Cap'n Proto (a link process that announced itself to a
// restarted shadowd): `stream` is this side's end, for a LineChannel; what is written to
// it goes to `theirs` as GuestControl.write calls, and what `mine` (for the other side)
// receives is read from it. The connection's end (`mine` dropped, a call to `theirs`
// failing) ends the stream.
struct ControlOverRpc {
  kj::Own<kj::AsyncIoStream> stream;
  rpc::GuestControl::Client mine;
};
ControlOverRpc controlOverRpc(kj::TaskSet& tasks, rpc::GuestControl::Client theirs);

// The per-job socket the job's shim sends its calls to (beside shadowd's own sockets:
// the shim finds shadowd's local socket in the same directory, shim/self_api.cc).
kj::String linkSocketPath(kj::StringPtr relayPath, uint64_t jobId);

class LinkProcess {
 public:
  // Starts `mig-link` for job `jobId` with `restart` (its argv, env) as the job's
  // restart; `gateFd` becomes the restart's fd 3, `restoreLog` its stderr.
  LinkProcess(Daemon& d, uint64_t jobId, kj::StringPtr home, const ChildSpec& restart, int gateFd,
              kj::StringPtr restoreLog);
  // A link process that announced itself to this (restarted) shadowd: its job runs as
  // `realPid`; its control lines come over `control` (controlOverRpc).
  LinkProcess(Daemon& d, uint64_t jobId, pid_t linkPid, pid_t realPid, kj::Own<kj::AsyncIoStream> control);
  ~LinkProcess() noexcept(false);

  // The restart's PID (the job's process on this host).
  kj::Promise<pid_t> jobPid() { return pid_.addBranch(); }
  // Its wait status (a link process that dies first: as if killed by SIGKILL).
  kj::Promise<int> exited() { return exited_.addBranch(); }
  kj::Promise<kj::String> setupProblems();
  void answerEnd(bool tellHome) { control_.writeLine(tellHome ? "tell" : "left"); }
  pid_t linkPid() const { return linkPid_; }
  // The link process ended before the job did (the job was killed then): its end is
  // shadowd's to tell home.
  bool lost() const { return lost_; }

 private:
  kj::Promise<void> readLoop();
  void handle(kj::StringPtr line);
  void addCounts(char* p);  // "CALLS OUT IN" into the metrics

  Daemon& d_;
  uint64_t jobId_;
  pid_t linkPid_ = 0;
  bool lost_ = false;
  int linkFdForCtor_ = -1;  // the link process's end of the control socket, until spawned
  LineChannel control_;
  kj::Own<kj::PromiseFulfiller<pid_t>> pidFulfiller_;
  kj::ForkedPromise<pid_t> pid_ = nullptr;
  kj::Own<kj::PromiseFulfiller<int>> exitFulfiller_;
  kj::ForkedPromise<int> exited_ = nullptr;
  kj::Vector<kj::Own<kj::PromiseFulfiller<kj::String>>> problemWaiters_;
  kj::Promise<void> linkExit_ = nullptr;
  kj::Promise<void> reading_ = nullptr;
};

}  // namespace mig::shadow
