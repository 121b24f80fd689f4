// New threads and processes from a thread whose system calls are dispatched. The
// call cannot simply be re-issued from the handler when the child gets its own stack
// (threads, posix_spawn's vfork-like child): the child would start inside the
// handler, on a stack where the handler's frame is not. So the handler builds a
// signal frame on the child's stack (the parent's trapped context, rax = 0, rsp = the
// child's stack) and the child's first act is rt_sigreturn from it (trampolines.cc):
// both continue after the syscall instruction as they would have, and the parent
// stays dispatched. A new thread (CLONE_THREAD with its own TLS) turns dispatch on for
// itself first. Children that are processes forward through the job's deputy too,
// with fd tables of their own (child_table.h), and get virtual PIDs from home's PID
// space (child_pids.h).
//
// Without a new stack: fork-like calls run in the handler (the child gets a copy of
// it and returns through it); vfork and clone(CLONE_VM|CLONE_VFORK) without a stack
// run as fork (the child has its own copy of memory instead of borrowing the
// parent's, which callers that only exec or _exit cannot tell). Anything else that
// shares memory without a stack of its own re-executes natively, leaving this thread
// undispatched from then on.
#include "shim/forward/trapped_call.h"

#include "shim/forward/child_pids.h"
#include "shim/forward/child_table.h"
#include "shim/forward/clock_shift.h"
#include "shim/forward/connection.h"
#include "shim/forward/state.h"
#include "shim/forward/sud.h"
#include "shim/forward/trampolines.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <linux/sched.h>
#include <sys/syscall.h>

namespace mig::forward {
namespace {

// The kernel's struct ucontext is glibc's ucontext_t up to and including the first
// 8 bytes of uc_sigmask; rt_sigreturn reads nothing after it.
constexpr uint64_t kKernelUcontextSize = offsetof(ucontext_t, uc_sigmask) + 8;
static_assert(offsetof(ucontext_t, uc_sigmask) == 296);
constexpr uint64_t kSiginfoSize = 128;  // the rest of struct rt_sigframe
constexpr uint64_t kRedZone = 128;

struct CloneRequest {
  uint64_t flags;
  uint64_t stack;  // 0: none; else the child's initial stack pointer
};

CloneRequest describe(const TrappedCall& c) {
  switch (c.nr) {
    case SYS_clone: return {static_cast<uint64_t>(c.a[0]), static_cast<uint64_t>(c.a[1])};
    case SYS_clone3: {
      const auto* args = reinterpret_cast<const struct clone_args*>(c.a[0]);
      if (args == nullptr || static_cast<uint64_t>(c.a[1]) < CLONE_ARGS_SIZE_VER0) return {0, 0};
      uint64_t stack = args->stack != 0 ? args->stack + args->stack_size : 0;
      return {args->flags, stack};
    }
    default: return {SIGCHLD, 0};  // fork, vfork
  }
}

// Size of the saved FPU/XSAVE area the frame's fpregs point at.
uint64_t fpStateSize(const void* fp) {
  if (fp == nullptr) return 0;
  const auto* sw = reinterpret_cast<const struct _fpx_sw_bytes*>(static_cast<const char*>(fp) + 464);
  if (sw->magic1 == FP_XSTATE_MAGIC1 && sw->extended_size >= 512 && sw->extended_size <= (1u << 16)) {
    return sw->extended_size;
  }
  return 512;  // FXSAVE only
}

// Builds the child's signal frame below its stack pointer; returns the address of
// its ucontext (rt_sigreturn's stack pointer).
uint64_t buildChildFrame(const ucontext_t* uc, uint64_t childSp) {
  const void* fp = uc->uc_mcontext.fpregs;
  const uint64_t fpSize = fpStateSize(fp);
  const uint64_t fpAt = (childSp - kRedZone - fpSize) & ~uint64_t{63};  // XRSTOR wants 64
  const uint64_t ucAt = (fpAt - kSiginfoSize - kKernelUcontextSize) & ~uint64_t{15};
  auto* child = reinterpret_cast<ucontext_t*>(ucAt);
  memcpy(child, uc, kKernelUcontextSize);
  if (fpSize != 0) memcpy(reinterpret_cast<void*>(fpAt), fp, fpSize);
  child->uc_mcontext.fpregs = fpSize != 0 ? reinterpret_cast<fpregset_t>(fpAt) : nullptr;
  child->uc_mcontext.gregs[REG_RAX] = 0;
  child->uc_mcontext.gregs[REG_RSP] = static_cast<greg_t>(childSp);
  // rt_sigreturn also sets the alternate signal stack from the frame: a new thread has none.
  child->uc_stack.ss_sp = nullptr;
  child->uc_stack.ss_size = 0;
  child->uc_stack.ss_flags = SS_DISABLE;
  return ucAt;
}

// First code of a new thread of ours (on its own stack and TLS): dispatch on, blocked.
void newThreadSetup() {
  allowSyscalls();
  if (shim::g_runtime.forward.status.load() == kActive && enableSud()) blockSyscalls();
}

// In a child process that shares its parent's fd table (CLONE_FILES without
// CLONE_VM): the deputy cannot tell the two apart, so it runs undispatched, without
// our connections, and on this host's clocks (its deadlines could not be converted).
void becomeUndispatchedProcess() {
  t_sudOn = 0;
  shim::g_runtime.forward.status.store(kInactive);
  clearClockShift();
  dropAllConnections(false);
}

// In a child process with its own memory and fd table: it forwards through the
// job's deputy like the job, with a table of its own (child_table.h), its own
// connections, and the PID home gave it.
void becomeForwardingChild(pid_t reservation) {
  dropAllConnections(true);  // the parent's: ours are copies of its sockets
  takeOwnTable();
  becomeChild(reservation);
  adoptInheritedHomeFds();
  allowSyscalls();
  if (enableSud()) blockSyscalls();  // dispatch is not inherited
}

// First code of a posix_spawn-like child (a copy of memory: see runClone).
void spawnedChildSetup() {
  becomeForwardingChild(shim::g_runtime.forward.spawnVpid.load());
}

}  // namespace

// The parent's side of a new child process: its virtual PID instead of the real one.
long asChildPid(pid_t reservation, long real) { return bindChildPid(reservation, static_cast<pid_t>(real)); }

long runClone(const TrappedCall& c, ucontext_t* uc) {
  const CloneRequest req = describe(c);
  const bool sharesMemory = (req.flags & CLONE_VM) != 0;
  if (req.stack != 0) {
    const uint64_t frame = buildChildFrame(uc, req.stack);
    if (req.flags & CLONE_THREAD) {
      const bool tls = req.flags & CLONE_SETTLS;
      return mig_fwd_clone(c.nr, c.a[0], c.a[1], c.a[2], c.a[3], c.a[4], frame, tls && t_sudOn ? newThreadSetup : nullptr);
    }
    // A process on a stack of its own: posix_spawn's child (CLONE_VM|CLONE_VFORK),
    // which only sets up and execs. It must forward what it execs, so it must run
    // our code, which a child borrowing its parent's memory cannot (the state it
    // would change is the parent's): it gets a copy instead, like a fork (the parent
    // still waits for its exec; what it cannot see is an exec failure, which the
    // child reports by exiting with 127). The frame is in its copy too.
    const pid_t reservation = reserveChildPid();
    shim::g_runtime.forward.spawnVpid.store(reservation);
    const bool copy = !(req.flags & CLONE_FILES);
    int64_t a0 = c.a[0];
    struct clone_args args {};
    if (copy && c.nr == SYS_clone) a0 = static_cast<int64_t>(req.flags & ~uint64_t{CLONE_VM});
    if (copy && c.nr == SYS_clone3) {
      const uint64_t size = static_cast<uint64_t>(c.a[1]) < sizeof(args) ? static_cast<uint64_t>(c.a[1]) : sizeof(args);
      memcpy(&args, reinterpret_cast<const void*>(c.a[0]), size);
      args.flags &= ~uint64_t{CLONE_VM};
      a0 = reinterpret_cast<int64_t>(&args);
    }
    long r = mig_fwd_clone(c.nr, a0, c.a[1], c.a[2], c.a[3], c.a[4], frame, copy ? spawnedChildSetup : nullptr);
    return asChildPid(reservation, r);
  }
  if (sharesMemory) {
    const bool vforkLike = (req.flags & CLONE_VFORK) && !(req.flags & (CLONE_THREAD | CLONE_SIGHAND));
    if (!vforkLike) return kRunNatively;
  }
  const pid_t reservation = reserveChildPid();
  long r;
  if (c.nr == SYS_vfork) {
    r = runLocally(SYS_fork);
  } else if (c.nr == SYS_clone) {
    r = runLocally(SYS_clone, static_cast<int64_t>(req.flags & ~uint64_t{CLONE_VM | CLONE_VFORK}), 0, c.a[2], c.a[3],
                   c.a[4]);
  } else if (c.nr == SYS_clone3) {
    struct clone_args args {};
    const uint64_t size = static_cast<uint64_t>(c.a[1]) < sizeof(args) ? static_cast<uint64_t>(c.a[1]) : sizeof(args);
    memcpy(&args, reinterpret_cast<const void*>(c.a[0]), size);
    args.flags &= ~uint64_t{CLONE_VM | CLONE_VFORK};
    r = runLocally(SYS_clone3, reinterpret_cast<int64_t>(&args), static_cast<int64_t>(size));
  } else {
    r = runLocally(c.nr);
  }
  if (r == 0) {
    if (req.flags & CLONE_FILES) {
      becomeUndispatchedProcess();
      becomeChild(reservation);
    } else {
      becomeForwardingChild(reservation);
    }
    return 0;
  }
  return asChildPid(reservation, r);
}

}  // namespace mig::forward
