// A system call trapped by syscall user dispatch, as the SIGSYS handler's helpers
// (sigsys_handler.cc, fd_mirror.cc, forward_io.cc, clone.cc, signals.cc) pass it
// around, and the ways they run it. Everything here runs in the SIGSYS handler:
// async-signal-safe, raw system calls from the shim's code only.
#pragma once

#include "rsc/forward_table.h"

#include <cstdint>
#include <ucontext.h>

namespace mig::forward {

struct TrappedCall {
  long nr;
  int64_t a[6];  // rdi rsi rdx r10 r8 r9
};

// The handler's verdict besides a result: re-execute the syscall instruction with the
// thread's selector at ALLOW (the thread then runs undispatched).
inline constexpr long kRunNatively = 1l << 62;
// ... or: return to the application at the syscall instruction, dispatched as before,
// so a pending signal's handler runs first and the call is then made again (a call
// the kernel would have restarted after a SA_RESTART handler).
inline constexpr long kCallAgain = (1l << 62) + 1;

// Runs the call here, from the shim's code. Calls that may block run with the
// application's signal mask (from the trapped context), so its signals interrupt them
// as they would have; the handler itself runs with every signal blocked.
long runLocally(const TrappedCall& c, const ucontext_t* uc);
long runLocally(long nr, int64_t a0 = 0, int64_t a1 = 0, int64_t a2 = 0, int64_t a3 = 0, int64_t a4 = 0,
                int64_t a5 = 0);

// The fd number an int argument holds (the kernel reads 32 bits).
inline int32_t fdArg(int64_t v) { return static_cast<int32_t>(v); }

// Forwards the row's call with args (splitting large reads and writes); negative errno
// on failure. For calls the table has a row for; Openat and the fd-table calls go
// through fd_mirror.h instead. firstPiece: false when it continues a call that has
// moved bytes already (writev's later buffers).
long forwardRow(const rsc::Row& row, const int64_t args[6], bool firstPiece = true);

// Forwards `nr` with args if the table has a row for it (EIO if not: a bug).
long forwardSyscall(long nr, int64_t a0, int64_t a1 = 0, int64_t a2 = 0, int64_t a3 = 0);

// readv/writev/preadv/pwritev(2) on a forwarded fd, one forwarded read or write per
// buffer.
long forwardVectorIo(const TrappedCall& c);

// clone, clone3, fork, vfork (clone.cc).
long runClone(const TrappedCall& c, ucontext_t* uc);

// rt_sigaction and rt_sigprocmask, emulated so the shim keeps SIGSYS (signals.cc).
long emulateSigaction(const TrappedCall& c);
long emulateSigprocmask(const TrappedCall& c, ucontext_t* uc);

// The fd-table calls on forwarded fds, mirrored on both sides (fd_mirror.cc).
// newFdForwarded: a call that makes a new fd at home (openat of a home path, accept
// on a home socket), which gets the lowest free number here.
long newFdForwarded(const rsc::Row& row, const int64_t args[6], bool cloexec);
long closeMirrored(const TrappedCall& c);
long closeRangeMirrored(const TrappedCall& c);
long dupMirrored(const TrappedCall& c);
long fcntlDupMirrored(const TrappedCall& c);

// Socket calls on home fds (socket_calls.cc): the rows of the socket handlers
// (rsc::Handler NewSocket to SocketName: socket, accept, and those whose results have
// caller-sized lengths); any other row is just forwarded. `home`: the arguments with
// home fd numbers, `a`: the caller's.
long homeSocketRow(const rsc::Row& row, const int64_t home[6], const int64_t* a);
// sendmsg, recvmsg, sendmmsg, recvmmsg on a home socket (ancillary data is not
// carried: sendmsg with some fails with EOPNOTSUPP, recvmsg gets none).
long forwardMessageCall(const TrappedCall& c);

}  // namespace mig::forward
