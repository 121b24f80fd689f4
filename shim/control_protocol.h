// The conversation between migctl and the shim's control thread (one Unix socket
// per process, in the abstract namespace), and the checkpoint block: a fixed-layout
// record the shim fills while every thread is parked, which migctl then reads from
// the process's memory. Plain structs, no allocation: the shim fills them from a
// signal handler.
//
//   migctl                               shim (control thread)
//   connect  ctlSocketName(pid)
//   Request{op = checkpoint} ───────────▶ parks every thread, fills the block
//                            ◀─────────── Reply{status, blockAddr}
//   reads /proc/pid/{maps,mem,...} and the block, writes the image
//   Command{resume | exit}   ───────────▶ threads resume / process exits
//
// If migctl goes away before sending a Command, the threads resume.
#pragma once

#include "image/restore_plan.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

namespace mig::control {

inline constexpr uint32_t kMagic = 0x4c54434d;  // "MCTL"
inline constexpr uint32_t kVersion = 4;  // 2: ThreadSlot::kernel; 3: Block::timers; 4: Block::homeFds

// Abstract socket name (leading NUL) of process `pid`'s control socket.
// Returns the length to pass to bind/connect after sun_family.
// `alias`: the name a restored process also listens under, its virtual PID, in a
// namespace of its own ("vctl"): a virtual PID is often another live process's real
// PID on this host, whose own name it must never take (nor be listed as).
inline int ctlSocketName(char* out, size_t size, uid_t uid, pid_t pid, bool alias = false) {
  int n = snprintf(out + 1, size - 1, "mig/%u/%s/%d", static_cast<unsigned>(uid), alias ? "vctl" : "ctl",
                   static_cast<int>(pid));
  out[0] = '\0';
  return n + 1;
}

enum Op : uint32_t {
  kOpCheckpoint = 1,
  kOpResume = 2,  // Command: let the threads continue
  kOpExit = 3,    // Command: end the process (checkpoint --stop) with kCheckpointedStatus
  kOpBecomeDeputy = 4,  // Command: exec the deputy in place; its argv follows in the next
                        // message (NUL-separated, at most kMaxDeputyArgs bytes)
  kOpTrackWrites = 5,   // Request: make a userfaultfd for write tracking (pre-copy) and
                        // send it back with the Reply (SCM_RIGHTS); blockAddr = 0. The job
                        // keeps running; the connection ends after the reply.
  kOpCopyOnWrite = 6,   // Request: as kOpTrackWrites, a userfaultfd with synchronous write
                        // protection for a concurrent checkpoint (write_tracking.h)
  kOpBecomeDeputyOnClose = 7,  // Command: as kOpBecomeDeputy, the exec once this connection
                               // ends (a tree's commit: the deputies start after the hop's)
  kOpBornAwayChildren = 8,  // Request: the real PIDs of the children born away this process
                            // has not reaped (shim/forward/child_pids.h): one message, a Reply
                            // whose `reserved` is their count, then that many int32_t. The
                            // connection ends after it.
  kOpTryDeputy = 9,  // Command: as kOpBecomeDeputy, before the hop's commit: a successful
                     // exec ends this connection (close-on-exec); a failed one leaves the
                     // job as it was and says so (Reply, status kDeputyExecFailed, reserved
                     // = errno), then the next command is waited for as after the freeze
  kOpProbeDeputy = 10,  // Request: the deputy's argv follows as for kOpBecomeDeputy; its
                        // exec is tried in a child of the process, which ends at once, while
                        // the job runs on (a tree member's or a post-copy job's deputy
                        // starts after the commit: proved before it). Reply status kOk, or
                        // kDeputyExecFailed with reserved = errno. The connection ends after it.
};
inline constexpr uint32_t kMaxDeputyArgs = 4096;

// The exit status of a process ended by kOpExit (`migctl checkpoint --stop`): its parent
// can tell "checkpointed, to be restarted" from "finished". Outside 0-2, sysexits'
// 64-78 and the shells' 126, 127 and 128+signal.
inline constexpr int kCheckpointedStatus = 86;

struct Request {
  uint32_t magic;
  uint32_t version;
  uint32_t op;
  int32_t requesterPid;  // allowed to read our memory (PR_SET_PTRACER)
};

enum Status : int32_t {
  kOk = 0,
  kBusy = 1,           // another checkpoint is in progress
  kThreadTimeout = 2,  // a thread did not reach the checkpoint signal in time
  kBadRequest = 3,
  kSigevThread = 4,    // a SIGEV_THREAD timer's glibc helper thread blocks every signal
  kNoTracking = 5,     // kOpTrackWrites/kOpCopyOnWrite: no such userfaultfd here; reserved = errno
  kDeputyExecFailed = 6,  // kOpTryDeputy: the exec failed, the job is intact; reserved = errno
};

struct Reply {
  uint32_t magic;
  int32_t status;
  uint64_t blockAddr;  // address of the Block in the process
  uint32_t blockSize;
  uint32_t reserved;
};

inline constexpr uint32_t kMaxThreads = 1024;
inline constexpr uint32_t kMaxShimFds = 8;
inline constexpr uint32_t kMaxHomeFds = 4096;  // forward::kMaxFds

struct ThreadSlot {
  int32_t realTid;
  int32_t vtid;
  uint64_t ucontextAddr;  // the saved frame's struct ucontext: rt_sigreturn's stack pointer
  plan::ThreadKernelState kernel;
  uint32_t isControlThread;
  uint32_t reserved;
};
static_assert(sizeof(ThreadSlot) == 104);

// One POSIX timer (timer_create) as the process itself sees it at the freeze; its
// clock, signal and target come from /proc/PID/timers (resources/posix_timers.cc).
struct TimerSlot {
  int32_t id;          // the kernel timer id (what timer_t holds)
  uint32_t flags;      // kTimer* below
  int64_t valueNs;     // time left, 0 = disarmed
  int64_t intervalNs;
  int32_t overrun;     // timer_getoverrun
  int32_t clock;       // its clock (/proc/self/timers), to arm it again in place
};
static_assert(sizeof(TimerSlot) == 32);
inline constexpr uint32_t kTimerAbsolute = 1;  // last armed with TIMER_ABSTIME (shim/posix_timers.cc)
// A one-shot timer stopped at the freeze (docs/kinds/posix_timer.md): armed again if
// the job goes on here; kTimerExpiredAtStop: it expired between its read and its stop,
// so its signal is pending and the time left is 0.
inline constexpr uint32_t kTimerStopped = 2;
inline constexpr uint32_t kTimerExpiredAtStop = 4;
inline constexpr uint32_t kMaxTimers = 256;

struct KernelSigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

struct Block {
  uint32_t magic;
  uint32_t version;
  int32_t vpid;
  int32_t vppid;
  uint32_t threadCount;
  uint32_t shimFdCount;
  int32_t shimFds[kMaxShimFds];  // the shim's own fds: not part of the application
  uint64_t brk;                  // current program break
  uint64_t resumeInfoAddr;       // plan::ResumeInfo inside the shim
  int64_t monotonicNs;           // CLOCK_MONOTONIC at the freeze
  int64_t itimerValueNs;         // ITIMER_REAL remaining
  int64_t itimerIntervalNs;
  KernelSigaction sigactions[64];  // index i: signal i+1
  ThreadSlot threads[kMaxThreads];
  uint64_t resumeEntry;          // the shim's mig_resumed_thread (plan::Header::resumeEntry)
  int64_t realtimeNs;            // CLOCK_REALTIME at the freeze (dates of absolute timers)
  uint32_t timerCount;           // POSIX timers in `timers`
  uint32_t timersComplete;       // 0: more than kMaxTimers, or no /proc/self/timers to list them
  TimerSlot timers[kMaxTimers];
  // Bit n: fd n is one of the job's home fds (it runs away from home and its calls on
  // fd n go there; what the capture sees at n is mig's local stand-in for it).
  uint64_t homeFds[kMaxHomeFds / 64];
};

inline bool isHomeFd(const Block& b, int fd) {
  return fd >= 0 && fd < static_cast<int>(kMaxHomeFds) && ((b.homeFds[fd / 64] >> (fd % 64)) & 1) != 0;
}

}  // namespace mig::control
