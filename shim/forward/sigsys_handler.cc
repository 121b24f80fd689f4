// The SIGSYS handler: every system call an application thread makes outside the
// shim's code arrives here once forwarding is active (syscall user dispatch), with its
// number and arguments in the trapped context. It either forwards the call home (the
// table in rsc/ has a row for it and it concerns home: a home fd, or a path outside
// the host-local paths) or runs it here from the shim's code, and puts the result in
// rax. A few calls are never simply re-issued: rt_sigreturn (the frame is the
// application's, not ours), signal masks and actions (signals.cc), clone & co.
// (clone.cc), and the calls that create or drop fds (fd_mirror.cc).
//
// The handler runs with every signal blocked, uses no lock, no allocation and no
// libc function that makes a system call, and leaves errno alone.
#include "shim/forward/signals.h"
#include "rsc/call_policy.h"
#include "rsc/child_locks.h"
#include "rsc/open_rule.h"
#include "shim/forward/child_pids.h"
#include "shim/forward/child_table.h"
#include "shim/forward/clock_shift.h"
#include "shim/forward/exec_handoff.h"
#include "shim/forward/group_side.h"
#include "shim/forward/home_mmap.h"
#include "shim/forward/homecoming.h"
#include "shim/forward/connection.h"
#include "shim/forward/locality.h"
#include "shim/forward/readiness_stand_in.h"
#include "shim/forward/same_file.h"
#include "shim/forward/shared_file_mapping.h"
#include "shim/forward/state.h"
#include "shim/forward/sud.h"
#include "shim/forward/trampolines.h"
#include "shim/forward/trapped_call.h"
#include "shim/proc_dir.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

namespace mig::forward {
namespace {

using shim::rawSyscall;

State& state() { return shim::g_runtime.forward; }

// Arguments that are temporary signal masks: the application's mask while the call
// waits (and while handlers run from it), so SIGSYS must not be in it.
int64_t* tempMaskArg(long nr, int64_t* a) {
  switch (nr) {
    case SYS_rt_sigsuspend: return &a[0];
    case SYS_ppoll: return &a[3];
    case SYS_epoll_pwait: case SYS_epoll_pwait2: return &a[4];
    default: return nullptr;
  }
}

// Runs the call here. Calls that never wait (rsc::neverBlocksHere: the row says, or
// the list of calls without one) need not open the handler to the application's
// signals, which costs two system calls. `row`: the table's row for the call, if any.
long runWith(long nr, const int64_t* a, const ucontext_t* uc, const rsc::Row* row) {
  if (uc == nullptr || rsc::neverBlocksHere(row, nr)) return rawSyscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
  int64_t args[6] = {a[0], a[1], a[2], a[3], a[4], a[5]};
  uint64_t temp = 0;
  if (int64_t* m = tempMaskArg(nr, args); m != nullptr && *m != 0) {
    temp = *reinterpret_cast<const uint64_t*>(*m) & ~kSigsysBit;
    *m = reinterpret_cast<int64_t>(&temp);
  }
  struct {
    uint64_t* ss;
    uint64_t len;
  } pselectMask{};
  if (nr == SYS_pselect6 && args[5] != 0) {
    const auto* given = reinterpret_cast<const decltype(pselectMask)*>(args[5]);
    pselectMask = *given;
    if (pselectMask.ss != nullptr) {
      temp = *pselectMask.ss & ~kSigsysBit;
      pselectMask.ss = &temp;
    }
    args[5] = reinterpret_cast<int64_t>(&pselectMask);
  }
  uint64_t appMask = *reinterpret_cast<const uint64_t*>(&uc->uc_sigmask) & ~kSigsysBit, saved = 0;
  rawSyscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&appMask), reinterpret_cast<long>(&saved), 8);
  long r = rawSyscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]);
  rawSyscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&saved), 0, 8);
  return r;
}

// What rsc::whereRowGoes asks about this process.
struct Facts {
  const State& s;
  bool cwdIsLocal() const { return s.cwdLocal.load() != 0; }
  bool internetSocketsAtHome() const { return s.config.network == kNetworkHome; }
  bool pathIsHome(int64_t dirfd, const char* path) const { return forward::pathIsHome(s, fdArg(dirfd), path); }
  bool isHomeFd(int64_t fd) const { return isForwardedFd(s, fdArg(fd)); }
};

// A write that failed with EPIPE at home: the kernel would have sent SIGPIPE to the
// writing thread, but it went to the deputy (which blocks it). Raise it here, where
// the application's disposition decides (die, handler, or ignored: just EPIPE).
long raiseSigpipeOnEpipe(long r) {
  if (r == -EPIPE) {
    shim::rawSyscall(SYS_tgkill, shim::rawSyscall(SYS_getpid), shim::rawSyscall(SYS_gettid), SIGPIPE);
  }
  return r;
}

bool anyForwarded(const State& s, int64_t a, int64_t b) {
  return isForwardedFd(s, fdArg(a)) || isForwardedFd(s, fdArg(b));
}

// A PID (as the application names it: virtual) that is not this process nor a child
// born here is a process at home: the job's parent, or a child it forked before
// leaving (now the deputy's). Decided before the PID is translated: a home PID may
// be the number of some process here too (this one's, or a child's real PID).
bool isHomePid(int64_t arg) {
  const pid_t pid = static_cast<pid_t>(arg);
  return pid > 0 && pid != shim::g_runtime.vpid && childRealPid(pid) == 0;
}

// The PID as the kernel here knows it: the process's and its children's virtual
// PIDs (also as process groups) are not the real ones. PIDs are 32-bit: the upper
// half of the register is not the caller's.
pid_t localPid(int64_t arg) {
  const pid_t pid = static_cast<pid_t>(arg);
  const shim::Runtime& rt = shim::g_runtime;
  if (pid == rt.vpid) return shim::realPid();
  if (pid_t real = childRealPid(pid); real != 0) return real;
  if (pid < -1 && -pid == rt.vpid) return -shim::realPid();
  if (pid_t real = pid < -1 ? childRealPid(-pid) : 0; real != 0) return -real;  // a group a child born here leads
  return pid;
}

// Tells the deputy's lock keeper (rsc/child_locks.h) that process `owner` (a virtual
// PID) closed home fd `homeFd` (kChildLockForget) or ended (kChildLockForgetAll, fd -1).
void sendChildLockForget(int64_t homeFd, int cmd, pid_t owner) {
  struct flock unused {};  // the row's struct travels whatever the command
  int64_t args[6] = {homeFd, cmd, reinterpret_cast<int64_t>(&unused), owner, 0, 0};
  forwardRow(rsc::rowOf(rsc::CallId::ChildLock), args);
}

// A wait that reaped a child born here: its slot is free, its virtual PID is the result.
// A child killed by a signal never made its exit_group, which drops its record locks at
// home: they go now (if it held none, the deputy has nothing to do).
long reaped(long real, bool exited, bool killed) {
  if (real <= 0) return real;
  pid_t vpid = childVirtualPid(static_cast<pid_t>(real));
  if (exited) forgetChild(static_cast<pid_t>(real));
  if (exited && killed) sendChildLockForget(-1, rsc::kChildLockForgetAll, vpid);
  return vpid;
}

// A wait for any child (-1, or the caller's group: 0) that ran here and found none
// ready (`here`: WNOHANG's 0, or ECHILD: the kernel has none here after all) asks home
// too, where the children the job forked before it left are its deputy's
// (child_pids.h, mayHaveChildrenAtHome). `nohang`: the wait here did not block
// (the application's WNOHANG, or a blocking wait asking both in turn); a wait that
// blocked here and found a child asks nothing more.
bool askHomeToo(int64_t arg, bool nohang, long here) {
  const pid_t pid = static_cast<pid_t>(arg);  // 32 bits: the register's upper half is not the caller's
  if (pid != -1 && pid != 0) return false;
  if (here != 0 && here != -ECHILD) return false;
  if (here == 0 && !nohang) return false;
  return mayHaveChildrenAtHome();
}

// Home's answer to that wait. ECHILD there (no children at home, now or later) is
// remembered. A poll that found nothing ready here says so when home failed (a broken
// link is no reason for a WNOHANG wait to fail); one that found no child here says
// what home said.
long fromHome(long home, long here) {
  if (home == -ECHILD) noChildrenAtHome();
  if (home >= 0 || here == -ECHILD) return home;
  return here;
}

// A process group named by kill (0: the caller's) that is home's: the moved members
// of a tree, and a single job, keep their groups at home, where their deputies stand
// in for them (docs/design.md "Moving a process tree"). The group of a child born here
// is this host's.
bool isHomeGroup(int64_t arg) {
  const pid_t pid = static_cast<pid_t>(arg);
  if (shim::g_runtime.bornAway) return false;  // a child born here: its groups are here
  return pid == 0 || (pid < -1 && childRealPid(-pid) == 0);
}

// Whether home says process group `pgid` is the caller's (its deputy's group there).
bool isOwnHomeGroup(pid_t pgid) {
  int64_t self[6] = {0, 0, 0, 0, 0, 0};
  const rsc::Row* getpgid = rsc::findRow(SYS_getpgid, self);
  return getpgid != nullptr && forwardRow(*getpgid, self) == pgid;
}

// Where a wait for process group `pgid` (> 1, virtual) looks (group_side.h).
GroupSide waitGroupSide(pid_t pgid) {
  return groupSide(pgid, shim::g_runtime.bornAway, shim::g_runtime.vpid, [](pid_t p) { return childRealPid(p) != 0; },
                   isOwnHomeGroup);
}

// Whether process `pid` here descends from process `ancestor` (real PIDs), by the
// parents /proc names (PPid in /proc/PID/status); a chain deeper than any family here
// is not one (the host's init and daemons end every other chain sooner).
bool descendsFrom(pid_t pid, pid_t ancestor) {
  for (int depth = 0; depth < 64 && pid > 1; ++depth) {
    char path[40] = "/proc/";
    __builtin_memcpy(shim::putDecimal(path + 6, static_cast<uint64_t>(pid)), "/status", 8);
    int64_t parent = 0;
    shim::forEachLine(path, [&](const char* line) { return !shim::numberAfter(line, "PPid:", parent); });
    if (parent == ancestor) return true;
    pid = static_cast<pid_t>(parent);
  }
  return false;
}

// kill of a home group runs at home, where every member's deputy in it passes the
// signal on to its member. The caller's own deputy drops it (a signal from itself is
// its own, deputy/signals.cc), so the caller, if in the group, takes it here, now,
// as kill(2) delivers to its caller before returning, named as sent by itself; and
// so do its descendants born here that are in its group here.
long killHomeGroup(const rsc::Row& row, int64_t* a) {
  const long r = forwardRow(row, a);
  const int sig = static_cast<int>(a[1]);
  if (r != 0 || sig <= 0) return r;
  const bool mine = static_cast<pid_t>(a[0]) == 0 || isOwnHomeGroup(-static_cast<pid_t>(a[0]));
  if (!mine) return r;
  // Its descendants born here (children, their children, ...) are in its group here,
  // not at home: they get it here too (those that left the caller's group here do not,
  // as they would not have). Only /proc knows the grandchildren: a child's shim keeps
  // its own children's PIDs.
  const pid_t me = shim::realPid();
  const long groupHere = shim::rawSyscall(SYS_getpgid, 0);
  shim::forEachNumberedEntry("/proc", [&](int pid, int) {
    if (pid != me && shim::rawSyscall(SYS_getpgid, pid) == groupHere && descendsFrom(pid, me)) {
      shim::rawSyscall(SYS_kill, pid, sig);
    }
  });
  siginfo_t info;
  __builtin_memset(&info, 0, sizeof info);
  info.si_signo = sig;
  info.si_code = SI_USER;
  info.si_pid = shim::g_runtime.vpid;
  info.si_uid = static_cast<uid_t>(shim::rawSyscall(SYS_getuid));
  shim::rawSyscall(SYS_rt_sigqueueinfo, me, sig, reinterpret_cast<long>(&info));
  return r;
}

long pendingSignalVerdict(const ucontext_t* uc);

// The pauses of a blocking wait for children here and at home (processCall), as a wait
// for a lock held at home pauses (waitForHomeLock): a child's end is seen at most
// 50 ms late, and a long wait asks home 20 times a second.
constexpr long kFirstWaitPauseNs = 1000 * 1000, kLongestWaitPauseNs = 50 * 1000 * 1000;

// A pause that lets in only the checkpoint signal (a job waiting this way can move;
// where it resumes it asks again from there).
void waitPause(long ns) {
  struct timespec pause = {0, ns};
  const uint64_t onlyCheckpoint = ~(uint64_t{1} << (shim::kCheckpointSignal - 1));
  rawSyscall(SYS_ppoll, 0, 0, reinterpret_cast<long>(&pause), reinterpret_cast<long>(&onlyCheckpoint), 8);
  shim::t_checkpointInterrupted = 0;  // this wait goes on by itself after a checkpoint
}

// kill, wait4 and waitid: towards processes at home they go home (the deputy is the
// parent of the children forked there); towards this process and the children born
// here they run here, in real PIDs. A wait for any child (or for the caller's own
// group) waits here while there are children born here, else at home; a poll
// (WNOHANG) that finds none ready here asks home too (askHomeToo), and a blocking
// wait for any child asks both in turn while home may have children.
long processCall(const rsc::Row& row, TrappedCall& c, const ucontext_t* uc) {
  int64_t* a = c.a;
  switch (row.handler) {
    case rsc::Handler::Kill: {
      if (isHomePid(a[0])) return forwardRow(row, a);
      if (isHomeGroup(a[0])) return killHomeGroup(row, a);
      a[0] = localPid(a[0]);
      return runWith(c.nr, a, uc, &row);
    }
    case rsc::Handler::Wait4: {
      const pid_t pid = static_cast<pid_t>(a[0]);
      if (pid > 0 ? isHomePid(a[0]) : !haveChildren()) return forwardRow(row, a);
      // A group (-PGID): the caller's own is looked for as 0 here and as asked at home.
      const GroupSide side = pid < -1 ? waitGroupSide(-pid) : GroupSide::Here;
      if (side == GroupSide::Home) return forwardRow(row, a);
      const int64_t idHere = side == GroupSide::Both ? 0 : localPid(pid);
      const int64_t asked[6] = {a[0], a[1], a[2], a[3], a[4], a[5]};
      const bool nohang = (asked[2] & WNOHANG) != 0;
      for (long pauseNs = kFirstWaitPauseNs;; pauseNs = pauseNs * 2 > kLongestWaitPauseNs ? kLongestWaitPauseNs : pauseNs * 2) {
        // A blocking wait for any child that may have children at home too: neither
        // kernel can wait for both, so each is asked without waiting, in turn, with a
        // pause between rounds (waitPause).
        const bool both = !nohang && uc != nullptr && askHomeToo(idHere, true, 0);
        int64_t here[6] = {idHere, asked[1], asked[2] | (both ? WNOHANG : 0), asked[3], asked[4], asked[5]};
        int ownStatus = 0;  // how the child ended, when the caller does not ask
        if (here[1] == 0) here[1] = reinterpret_cast<int64_t>(&ownStatus);
        long r = runWith(c.nr, here, uc, &row);
        const auto* status = reinterpret_cast<const int*>(here[1]);
        const bool exited = !(here[2] & (WUNTRACED | WCONTINUED)) ||
                            (status != nullptr && !WIFSTOPPED(*status) && !WIFCONTINUED(*status));
        r = reaped(r, exited, r > 0 && status != nullptr && WIFSIGNALED(*status));
        if (!askHomeToo(idHere, nohang || both, r)) return r;
        const bool polling = both && r == 0;  // children here, none ready: home is only looked at
        const int64_t home[6] = {asked[0], asked[1], asked[2] | (polling ? WNOHANG : 0), asked[3], asked[4], asked[5]};
        const long h = fromHome(forwardRow(row, home), r);
        if (!polling || h != 0) return h;
        if (!mayHaveChildrenAtHome()) continue;  // home has none: the next round waits here
        // A signal ends the wait only when no child was ready after it came (the kernel's
        // wait returns a child that ended before the signal is handled).
        if (const long verdict = pendingSignalVerdict(uc); verdict != 0) return verdict;
        waitPause(pauseNs);
      }
    }
    case rsc::Handler::ProcessGroup: {
      // setpgid of a child born here, in a group here (its own, or another's born here).
      // (A child born here, which has no deputy at home: its own group is here too.)
      const pid_t pid = static_cast<pid_t>(a[0]);
      const bool here = shim::g_runtime.bornAway || (pid > 0 && childRealPid(pid) != 0);
      if (!here) return forwardRow(row, a);
      a[0] = localPid(a[0]);
      if (static_cast<pid_t>(a[1]) > 0) a[1] = localPid(a[1]);
      return runWith(c.nr, a, uc, &row);
    }
    default: {  // waitid
      const int32_t type = static_cast<int32_t>(a[0]);
      const pid_t id = static_cast<pid_t>(a[1]);
      // P_PGID of the caller's group (0, or the one it is in: group_side.h) concerns
      // its children here (in its group here) and at home, as P_ALL does; a child born
      // here's group is here; any other group of a process not born here is home's.
      if (type == P_PID ? isHomePid(id) : type != P_PIDFD && !haveChildren()) return forwardRow(row, a);
      const GroupSide side = type != P_PGID ? GroupSide::Here
                             : id == 0 || id == shim::g_runtime.vpid ? GroupSide::Both
                                                                     : waitGroupSide(id);
      if (side == GroupSide::Home) return forwardRow(row, a);
      const bool ownGroup = type == P_PGID && side == GroupSide::Both;
      const bool anyChild = type == P_ALL || ownGroup;
      const int64_t asked[6] = {a[0], a[1], a[2], a[3], a[4], a[5]};
      const bool nohang = (asked[3] & WNOHANG) != 0;
      // Without the caller's siginfo (NULL) the wait still needs one: to tell "nothing
      // ready" from a child reaped, and which child born here was reaped.
      siginfo_t ownInfo;
      __builtin_memset(&ownInfo, 0, sizeof ownInfo);
      auto* info = asked[2] != 0 ? reinterpret_cast<siginfo_t*>(asked[2]) : &ownInfo;
      const int64_t idHere = ownGroup ? 0 : type == P_PID || type == P_PGID ? localPid(id) : asked[1];
      for (long pauseNs = kFirstWaitPauseNs;; pauseNs = pauseNs * 2 > kLongestWaitPauseNs ? kLongestWaitPauseNs : pauseNs * 2) {
        // As wait4's: a blocking wait for any child asks here and home in turn.
        const bool both = anyChild && !nohang && uc != nullptr && askHomeToo(-1, true, 0);
        int64_t here[6] = {asked[0], idHere, reinterpret_cast<int64_t>(info), asked[3] | (both ? WNOHANG : 0),
                           asked[4], asked[5]};
        long r = runWith(c.nr, here, uc, &row);
        if (r == 0 && info->si_pid > 0) {
          const bool exited = !(here[3] & WNOWAIT) && (info->si_code == CLD_EXITED || info->si_code == CLD_KILLED ||
                                                       info->si_code == CLD_DUMPED);
          info->si_pid = static_cast<pid_t>(
              reaped(info->si_pid, exited, info->si_code == CLD_KILLED || info->si_code == CLD_DUMPED));
        }
        // WNOHANG with nothing ready here: si_pid 0 (the kernel zeroes it then).
        const bool none = r == -ECHILD || (r == 0 && info->si_pid == 0);
        if (!anyChild || !askHomeToo(-1, nohang || both, r == -ECHILD ? r : (none ? 0 : 1))) return r;
        const bool polling = both && r == 0;
        const int64_t home[6] = {asked[0], asked[1], reinterpret_cast<int64_t>(info), asked[3] | (polling ? WNOHANG : 0),
                                 asked[4], asked[5]};
        const long h = fromHome(forwardRow(row, home), r);
        if (!polling || h != 0 || info->si_pid != 0) return h;
        if (!mayHaveChildrenAtHome()) continue;  // home has none: the next round waits here
        // A signal ends the wait only when no child was ready after it came (the kernel's
        // wait returns a child that ended before the signal is handled).
        if (const long verdict = pendingSignalVerdict(uc); verdict != 0) return verdict;
        waitPause(pauseNs);
      }
    }
  }
}

// What the signals pending for this thread (or its process) that the application's
// mask in the trapped context lets in do to a system call it waits in, by the rule of
// shim/signal_verdict.h (the one a park's end follows too): 0 nothing (none, or only
// ignored ones, which the kernel would have dropped but the handler's mask keeps
// pending), -EINTR (the deciding one has a handler without SA_RESTART, or ends the
// process), kCallAgain (a handler with SA_RESTART, or only a default stop: the call
// goes on after it). The shim's checkpoint signal is not the application's.
long pendingSignalVerdict(const ucontext_t* uc) {
  uint64_t pending = 0;
  if (rawSyscall(SYS_rt_sigpending, reinterpret_cast<long>(&pending), 8) != 0) return 0;
  const shim::Verdict v = shim::signalVerdict(pending & ~*reinterpret_cast<const uint64_t*>(&uc->uc_sigmask) &
                                                  ~kSigsysBit & ~signalBit(shim::kCheckpointSignal),
                                              shim::kernelAction);
  if (v.sig != 0) return v.interrupts ? -EINTR : kCallAgain;
  return v.stopped ? kCallAgain : 0;
}

// A lock call on a home fd that may wait for another holder (Handler::WaitsForLock).
// Its non-blocking form is tried at home (rsc::lockAttempt), and while another process
// holds the lock, tried again after a pause here that lets the checkpoint signal in (a
// job waiting for a lock can move; where it resumes it tries again from there). The
// deputy never blocks on it. A signal the application lets in ends the wait as it
// would have ended the system call: the handler runs and the call fails with EINTR,
// or is made again if the handler has SA_RESTART, as the kernel does for F_SETLKW and
// flock. What waiting this way loses: the kernel's queue of waiters (a lock freed
// goes to whoever asks first) and its deadlock detection (EDEADLK).
// One pause of a lock wait (waitPause), then what a signal the application lets in
// makes of the wait (pendingSignalVerdict: 0 to try again).
long pauseForLock(long& pauseNs, const ucontext_t* uc) {
  waitPause(pauseNs);
  pauseNs = pauseNs * 2 > kLongestWaitPauseNs ? kLongestWaitPauseNs : pauseNs * 2;
  return pendingSignalVerdict(uc);
}

long waitForHomeLock(const rsc::Row& row, const int64_t home[6], const ucontext_t* uc) {
  int64_t attempt[6];
  if (!rsc::lockAttempt(row, home, attempt)) return forwardRow(row, home);
  const rsc::Row* tryRow = rsc::findRow(row.sysno, attempt);
  if (tryRow == nullptr) return -EIO;  // the table lacks the non-blocking form: a bug
  long pauseNs = kFirstWaitPauseNs;
  for (;;) {
    const long r = forwardRow(*tryRow, attempt);
    if (!rsc::lockIsTaken(r)) return r;
    if (uc == nullptr) return r;  // no context to wait in (the shim's own use)
    if (const long verdict = pauseForLock(pauseNs, uc); verdict != 0) return verdict;
  }
}

// Record locks (fcntl F_SETLK, F_SETLKW, F_GETLK) of a process forked away from home
// are its own at home, not the job's: the row ChildLock takes them as OFD locks on a
// description the deputy's lock keeper holds for this process and file
// (rsc/child_locks.h). A wait goes as for WaitsForLock: tried without waiting, again
// after a pause that lets the checkpoint and the application's signals in.
bool isRecordLockCall(int64_t cmd) { return cmd == F_SETLK || cmd == F_SETLKW || cmd == F_GETLK; }

long childLock(State& s, const TrappedCall& c, const ucontext_t* uc) {
  auto* user = reinterpret_cast<struct flock*>(c.a[2]);
  if (user == nullptr) return -EFAULT;
  struct flock lock = *user;
  lock.l_pid = 0;  // as the OFD commands want it
  const bool test = c.a[1] == F_GETLK;
  int64_t args[6] = {homeFdOf(fdArg(c.a[0])), test ? F_OFD_GETLK : F_OFD_SETLK, reinterpret_cast<int64_t>(&lock),
                     shim::g_runtime.vpid, 0, 0};
  const rsc::Row& row = rsc::rowOf(rsc::CallId::ChildLock);
  long pauseNs = kFirstWaitPauseNs;
  for (;;) {
    const long r = forwardRow(row, args);
    if (r == 0 && test) *user = lock;
    if (r == 0 && !test && lock.l_type != F_UNLCK) s.childLocked.store(1, std::memory_order_release);
    if (c.a[1] != F_SETLKW || !rsc::lockIsTaken(r) || uc == nullptr) return r;
    if (const long verdict = pauseForLock(pauseNs, uc); verdict != 0) return verdict;
  }
}

// Such a process's close of a home fd drops its record locks on that file, as the
// kernel's close does (called before the fd goes); its end drops them all (fd -1).
void forgetChildLocks(State& s, int32_t fd) {
  if (!shim::g_runtime.bornAway || s.childLocked.load(std::memory_order_acquire) == 0) return;
  if (fd >= 0 && !isForwardedFd(s, fd)) return;
  sendChildLockForget(fd >= 0 ? homeFdOf(fd) : -1, fd >= 0 ? rsc::kChildLockForget : rsc::kChildLockForgetAll,
                      shim::g_runtime.vpid);
}

// A call the table has a row for, which concerns home: its handler (rsc::Handler).
long goHome(State& s, const rsc::Row& row, const TrappedCall& c, const ucontext_t* uc) {
  const int64_t* a = c.a;
  const bool stream = isStreamFd(s, fdArg(a[0]));
  int64_t home[6] = {a[0], a[1], a[2], a[3], a[4], a[5]};
  // Readiness the call is about to use up is told again after it, if it lasts.
  if (rsc::drainsReadiness(row, stream)) drainReadiness(fdArg(a[0]));
  toHomeFds(row, home);
  switch (row.handler) {
    case rsc::Handler::OpenFile:
      // The system's programs and libraries are opened here when they are the same as
      // home's (rsc/open_rule.h), so they can be mapped and read at local speed.
      if (rsc::openSide(reinterpret_cast<const char*>(a[1]), a[2]) == rsc::OpenSide::HereIfSameFile) {
        if (long fd = openHereIfSame(reinterpret_cast<const char*>(a[1]), a[2], a[3]); fd != kOpenAtHome) return fd;
      }
      return newFdForwarded(row, home, a[2] & O_CLOEXEC);
    case rsc::Handler::NewSocket: case rsc::Handler::Accept: case rsc::Handler::Receive:
    case rsc::Handler::SocketOption: case rsc::Handler::SocketName:
      return homeSocketRow(row, home, c.a);
    case rsc::Handler::WaitsForLock: return waitForHomeLock(row, home, uc);
    default: break;
  }
  long r = forwardRow(row, home);
  if (row.has(rsc::kSigpipeOnEpipe)) r = raiseSigpipeOnEpipe(r);
  if (r != 0) return r;
  if (row.handler == rsc::Handler::ChangeDir) s.cwdLocal.store(0);
  // A non-blocking stream's writes must see EAGAIN: they are not pipelined.
  // (Children born here never pipeline.)
  if (row.handler == rsc::Handler::SetsBlockingMode && !ownTable() && stream) {
    setPipelinedFd(s, fdArg(a[0]), rsc::pipelinesAfter(row, a));
  }
  return r;
}

long routeByTable(State& s, TrappedCall& c, const ucontext_t* uc);

// A call with forwarding active. The fd-table calls come first: they are mirrored
// whenever a home fd is involved, whatever the table says.
long route(TrappedCall& c, const ucontext_t* uc) {
  State& s = state();
  rsc::toAtForm(c.nr, c.a);
  if (long r = 0; shiftedClockCall(c, uc, r)) return r;  // the job's clocks (clock_shift.h)
  const int64_t* a = c.a;
  switch (c.nr) {
    case SYS_getppid:
      if (shim::g_runtime.restored) return shim::g_runtime.vppid;  // the home parent, known
      break;
    // A shared mapping of the file keeps its changes only until the fd goes (its
    // locks at home go with it): written back first (shared_file_mapping.h).
    case SYS_close:
      beforeFdClosed(fdArg(a[0]));
      setLockedFd(s, a[0], false);
      forgetChildLocks(s, fdArg(a[0]));
      return closeMirrored(c);
    case SYS_close_range:
      if (!(a[2] & CLOSE_RANGE_CLOEXEC)) beforeFdsClosed(static_cast<uint32_t>(a[0]), static_cast<uint32_t>(a[1]));
      return closeRangeMirrored(c);
    case SYS_dup: case SYS_dup2: case SYS_dup3:
      if (c.nr != SYS_dup && a[0] != a[1]) {
        beforeFdClosed(fdArg(a[1]));
        setLockedFd(s, a[1], false);
        forgetChildLocks(s, fdArg(a[1]));
      }
      return dupMirrored(c);
    case SYS_fcntl:
      if (a[1] == F_DUPFD || a[1] == F_DUPFD_CLOEXEC) return fcntlDupMirrored(c);
      // Close-on-exec belongs to this process's fd table, which the stand-in carries
      // (the restorer set it as it was); the deputy holds every home fd without it.
      if (a[1] == F_GETFD || a[1] == F_SETFD) return runWith(c.nr, c.a, uc, rsc::findRow(c.nr, c.a));
      [[fallthrough]];
    case SYS_flock:
      // A lock point of a shared writable mapping of the file: the job's changes go
      // home before the lock call does, home's come back once a lock is taken.
      if (isSharedMappingLockCall(c)) {
        const bool taking = beforeLockCall(c);
        const long r = routeByTable(s, c, uc);
        if (taking && r != kCallAgain) afterLockTaken(fdArg(a[0]));
        return r;
      }
      if (c.nr == SYS_fcntl && shim::g_runtime.bornAway && isRecordLockCall(a[1]) && isForwardedFd(s, fdArg(a[0]))) {
        return childLock(s, c, uc);
      }
      // A lock taken through a home fd: its file is one the job orders with locks.
      if (isLockTaking(c) && isForwardedFd(s, fdArg(a[0]))) {
        const long r = routeByTable(s, c, uc);
        if (r == 0) setLockedFd(s, a[0], true);
        return r;
      }
      break;
    case SYS_munmap: case SYS_mremap: case SYS_msync: case SYS_madvise: {
      beforeRangeCall(c);
      const long r = runWith(c.nr, c.a, uc, nullptr);
      afterRangeCall(c, r);
      return r;
    }
    case SYS_readv: case SYS_writev: case SYS_preadv: case SYS_pwritev: case SYS_preadv2: case SYS_pwritev2:
      if (!isForwardedFd(s, fdArg(a[0]))) break;
      if (c.nr == SYS_readv && isStreamFd(s, fdArg(a[0]))) drainReadiness(fdArg(a[0]));
      return raiseSigpipeOnEpipe(forwardVectorIo(c));
    // In-kernel copies between fds cannot span hosts: the usual fallbacks of their
    // callers (plain reads and writes) can.
    case SYS_copy_file_range: if (anyForwarded(s, a[0], a[2])) return -EXDEV; break;
    case SYS_sendfile:
      // Both ends at home: the copy is made there (the row). One end here: the
      // caller's fallback (plain reads and writes) crosses hosts.
      if (isForwardedFd(s, fdArg(a[0])) && isForwardedFd(s, fdArg(a[1]))) break;
      if (anyForwarded(s, a[0], a[1])) return -EINVAL;
      break;
    case SYS_splice: case SYS_tee:
      if (anyForwarded(s, a[0], a[2])) return -EINVAL;
      break;
    case SYS_mmap:
      if (!(a[3] & MAP_ANONYMOUS) && isForwardedFd(s, fdArg(a[4]))) return mapHomeFile(c);
      break;
    case SYS_sendmsg: case SYS_recvmsg: case SYS_sendmmsg: case SYS_recvmmsg:
      if (isForwardedFd(s, fdArg(a[0]))) return raiseSigpipeOnEpipe(forwardMessageCall(c));
      break;
    case SYS_execve: case SYS_execveat: return execWithHandoff(c, uc);
    // A child born here has no deputy of its own: its calls go to its parent's, whose
    // session is not its to leave (it is in a session and group here).
    case SYS_setsid: if (shim::g_runtime.bornAway) return runWith(c.nr, a, uc, nullptr); break;
    default: break;
  }
  return routeByTable(s, c, uc);
}

// The rest of route: the table's row for the call, if any, says where it goes.
long routeByTable(State& s, TrappedCall& c, const ucontext_t* uc) {
  const rsc::Row* row = rsc::findRow(c.nr, c.a);
  if (row != nullptr) {
    switch (row->handler) {
      case rsc::Handler::Kill: case rsc::Handler::Wait4: case rsc::Handler::Waitid:
      case rsc::Handler::ProcessGroup: return processCall(*row, c, uc);
      default: break;
    }
    switch (rsc::whereRowGoes(*row, c.a, Facts{s})) {
      case rsc::Where::Both: return -EXDEV;  // e.g. rename between a home and a local path
      case rsc::Where::Local: break;
      case rsc::Where::Home: return goHome(s, *row, c, uc);
    }
  }
  long r = runWith(c.nr, c.a, uc, row);
  if ((c.nr == SYS_chdir || c.nr == SYS_fchdir) && r == 0) s.cwdLocal.store(1);
  return r;
}

long dispatch(TrappedCall& c, ucontext_t* uc) {
  switch (c.nr) {
    case SYS_rt_sigreturn:
      // A handler returned through a restorer outside the shim (one installed before
      // we could adopt it): do its rt_sigreturn from here, on its frame.
      mig_fwd_sigreturn_at(static_cast<uint64_t>(uc->uc_mcontext.gregs[REG_RSP]));
    case SYS_rt_sigprocmask: return emulateSigprocmask(c, uc);
    case SYS_rt_sigaction: return emulateSigaction(c);
    case SYS_clone: case SYS_clone3: case SYS_fork: case SYS_vfork: return runClone(c, uc);
    case SYS_exit: releaseThreadConnection(); break;
    default: break;
  }
  if (state().status.load(std::memory_order_acquire) != kActive) return runLocally(c, uc);
  if (c.nr == SYS_exit_group) forgetChildLocks(state(), -1);
  return route(c, uc);
}

}  // namespace

long runLocally(const TrappedCall& c, const ucontext_t* uc) { return runWith(c.nr, c.a, uc, rsc::findRow(c.nr, c.a)); }

long runLocally(long nr, int64_t a0, int64_t a1, int64_t a2, int64_t a3, int64_t a4, int64_t a5) {
  return rawSyscall(nr, a0, a1, a2, a3, a4, a5);
}

void sigsysHandler(int sig, siginfo_t* info, void* context) {
  if (info->si_code != SYS_USER_DISPATCH) {
    deliverToApplication(sig, info, context);
    return;
  }
  auto* uc = static_cast<ucontext_t*>(context);
  greg_t* g = uc->uc_mcontext.gregs;
  TrappedCall c{info->si_syscall, {g[REG_RDI], g[REG_RSI], g[REG_RDX], g[REG_R10], g[REG_R8], g[REG_R9]}};
  t_openSignals = ~*reinterpret_cast<const uint64_t*>(&uc->uc_sigmask);
  long r = dispatch(c, uc);
  // A wait for home cut short by a signal with a handler (connection.h): the call ends
  // as that signal's action would end it (pendingSignalVerdict); made again if the
  // signal has gone meanwhile (another thread took it).
  if (takeSignalCancel() && r == -EINTR) {
    const long verdict = pendingSignalVerdict(uc);
    r = verdict != 0 ? verdict : kCallAgain;
  }
  t_openSignals = 0;
  if (takeRunHere()) r = kRunNatively;  // resumed back home, its call not run there (homecoming.h)
  if (r == kRunNatively) {
    allowSyscalls();
    g[REG_RIP] -= 2;  // back onto the 2-byte syscall instruction; rax still holds its number
    return;
  }
  if (r == kCallAgain) {
    g[REG_RIP] -= 2;
    g[REG_RAX] = info->si_syscall;  // the number as the application made it
    return;
  }
  g[REG_RAX] = r;
}

}  // namespace mig::forward
