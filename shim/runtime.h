// The shim's one process-global root object: identity (virtual PID), restore state
// and the checkpoint machinery's shared state. Created zero-initialised in .bss, so
// it is valid before the library constructor runs and needs no allocation; saved
// and restored with the rest of memory.
#pragma once

#include "image/restore_plan.h"
#include "shim/control_protocol.h"
#include "shim/forward/state.h"

#include <atomic>
#include <csignal>
#include <cstdint>
#include <sys/types.h>

// The shim is preloaded, so its TLS is in the static block: initial-exec access is a
// plain %fs-relative load, safe in signal handlers (no __tls_get_addr, no allocation).
#define MIG_TLS __attribute__((tls_model("initial-exec")))

namespace mig::shim {

// The signal that parks a thread for a checkpoint. Hidden from the application
// (signal_hiding.cc) so it stays deliverable.
inline constexpr int kCheckpointSignal = 63;

// Timer ids below this have their TIMER_ABSTIME flag remembered (shim/posix_timers.cc);
// the kernel hands out ids from 0 up per process.
inline constexpr uint32_t kTimerFlagIds = 4096;

// The self-migration API's state (self_api.cc, mig.h).
struct SelfApi {
  std::atomic<bool> busy;    // a mig_checkpoint/mig_move of this process is under way
  int pipeFd;                // the helper migctl's output while one runs, else -1
  char home[65];             // home's host name, seen before main at home
  char lastError[256];       // the helper's last line when it failed
};

struct Runtime {
  pid_t vpid;            // what getpid() returns, forever (the first real PID)
  pid_t vppid;           // what getppid() returned before the first restore
  bool restored;         // this process was restored from an image at least once
  bool bornAway;         // forked by a migrated process away from home: vpid and vppid
                         // are the virtual PIDs it and its parent have at home
  pid_t pendingVpid;     // set in a child born away until initProcess takes it (its
  pid_t pendingVppid;    // fork may run libc's atfork handlers, which call initProcess)
  int64_t frozenNs;      // CLOCK_MONOTONIC time spent frozen (checkpoint parks, image gaps)

  // Checkpoint state, shared between the control thread and the signal handlers.
  std::atomic<uint32_t> phase;       // kPhaseIdle / kPhaseStopping
  std::atomic<uint32_t> parked;      // threads parked in the handler (futex word)
  std::atomic<uint32_t> nextSlot;
  std::atomic<uint32_t> release;     // bumped to release parked threads (futex word)
  pid_t controlTid;
  int controlConn;                   // migctl's connection during a checkpoint
  int controlListen;
  int controlAlias;                  // listening under the virtual PID after a restore
  int controlWake;                   // eventfd + 1 (0: none): wakes the control thread to poll
                                     // its sockets under new numbers (own_fds.cc)
  std::atomic<uint32_t> controlLoops;  // bumped by the control thread before each poll
  // The control thread has an fd table of its own (unshare(CLONE_FILES)): a table
  // shared by two threads costs every fd call of the program a file reference (the
  // kernel's lockless path is for a table with one user). Its sockets, connection and
  // wake eventfd are then in its table only, never among the program's numbers; false
  // while the job forwards (its relay connections are in the program's table).
  bool controlOwnTable;
  // Work the control thread hands to a thread of the program parked for a checkpoint,
  // which runs it in the program's fd table (checkpoint.cc).
  std::atomic<uint32_t> parkSeq;     // futex word of parked threads: bumped to wake them
  std::atomic<uint32_t> delegateOp;  // futex word: kDelegate*
  pid_t delegateTid;                 // the thread to take it (the main thread: the largest
                                     // stack), 0: any
  char* deputyArgs;                  // kDelegateExecDeputy's arguments
  size_t deputyArgsLen;
  int deputyExecError;               // errno of its last exec that failed
  control::Block block;
  plan::ResumeInfo resume;           // written by the restorer
  forward::State forward;            // system call forwarding after a migration (shim/forward/)
  std::atomic<uint64_t> timerAbsolute[kTimerFlagIds / 64];  // bit id: timer id armed with TIMER_ABSTIME
  SelfApi self;
  int logFd;                         // MIG_LOG's fd + 1, 0 = not logging (log.h)
  char logPath[256];                 // MIG_LOG, kept to open it again after a restore
};

inline constexpr uint32_t kPhaseIdle = 0;
inline constexpr uint32_t kPhaseStopping = 1;

inline constexpr uint32_t kDelegateNone = 0;
inline constexpr uint32_t kDelegatePrepare = 1;     // forward::prepareCheckpoint
inline constexpr uint32_t kDelegateExecDeputy = 2;  // execDeputy(deputyArgs)
inline constexpr uint32_t kDelegateRunning = 3;
inline constexpr uint32_t kDelegateDone = 4;

extern Runtime g_runtime;

// Set by the checkpoint handler in the thread it interrupted; wrappers of calls
// that a checkpoint turns into EINTR (sleeps, timed waits) check and clear it.
extern thread_local volatile sig_atomic_t t_checkpointInterrupted MIG_TLS;
// The thread's virtual TID: its first real TID, cached on first use.
extern thread_local pid_t t_vtid MIG_TLS;
// In the control thread with a table of its own: MIG_LOG's fd + 1 there (the program
// may move its own copy, Runtime::logFd, to another number); 0 elsewhere.
extern thread_local int t_ownLogFd MIG_TLS;
// Real TIDs the thread had at its last checkpoints (besides t_vtid): a mutex locked
// then and not touched since still names one of them as its owner.
inline constexpr int kFormerTids = 4;
extern thread_local pid_t t_formerTids[kFormerTids] MIG_TLS;

// Before main, in a process started at home: remember home's host name (self_api.cc).
void recordHome();

pid_t realPid();
pid_t realTid();

}  // namespace mig::shim
