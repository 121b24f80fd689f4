// rsc/call_policy.h: what the shim and the deputy do with a forwarded call, decided
// from its row (forward_table.h) and the facts about its fd or paths the caller passes
// in. Pure functions, so the shim's SIGSYS handler and the deputy take the same
// decisions a unit test can check on a row of its own; no caller matches call ids.
//
// Async-signal-safe and header-only: no allocation, no system calls.
#pragma once

#include "rsc/forward_table.h"
#include "rsc/wire.h"

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/syscall.h>

namespace mig::rsc {

// --- the shim -----------------------------------------------------------------------

// Whether the shim waits for home's answer as long as home takes, letting a checkpoint
// in while it waits (no timeout). fdIsStream: the row's fd is a pipe, terminal or socket.
constexpr bool waitsPatiently(const Row& row, bool fdIsStream) {
  return row.blocking == Blocking::Always || (row.blocking == Blocking::OnStream && fdIsStream);
}

// Whether the call is sent without waiting for its result. fdIsPipelined: its fd is a
// stream in blocking mode or a regular file at home whose writes this process pipelines
// (a stream has no offset: a pwrite64 to it fails, at once).
constexpr bool isPipelined(const Row& row, bool fdIsPipelined, bool fdIsStream) {
  return row.has(kPipelinable) && fdIsPipelined && !(fdIsStream && row.has(kPositioned));
}

// Whether the call must run at home after the pipelined writes issued before it.
constexpr bool waitsForWrites(const Row& row, bool fdIsStream) {
  switch (row.ordering) {
    case Ordering::Always: return true;
    case Ordering::Never: return false;
    case Ordering::OnStream: return row.fdArg >= 0 && fdIsStream;
  }
  return true;
}

// Whether any fd argument of the call is a stream (isStream(value)): the fdIsStream of
// waitsForWrites. Every fd the call names counts, not only the one it works on: a dup3
// onto a stream whose writes are pipelined replaces that fd at home, so those writes
// must run first (bash's `echo x >&5` is dup3(5, 1), a pipelined write to 1, then
// dup3(10, 1) back: run before the write, the write went to the old stdout; issue 15).
template <typename IsStream>
constexpr bool namesStream(const Row& row, const int64_t a[6], IsStream isStream) {
  for (int i = 0; i < row.nargs && i < 6; ++i) {
    if (row.args[i].kind == Arg::Fd && isStream(a[i])) return true;
  }
  return false;
}

// Which pipelined writes issued before it the call runs after at home: all of them
// (waitsForWrites); else those to regular files (write-behind: its result or what it
// does may depend on them), except for a stream's read, which waits for nothing (a
// prompt on its way, a pipe at home that is full, must not hold it up).
enum class WaitFor { Nothing, FileWrites, AllWrites };
constexpr WaitFor writesToWaitFor(const Row& row, bool fdIsStream) {
  if (waitsForWrites(row, fdIsStream)) return WaitFor::AllWrites;
  if (row.ordering == Ordering::Never && fdIsStream) return WaitFor::Nothing;
  return WaitFor::FileWrites;
}

// The signal with which the kernel stops a process group that is not its terminal's
// foreground one making the call on that terminal: SIGTTIN for a call that takes input,
// SIGTTOU for a write (when the terminal has TOSTOP set); 0 for any other call. The
// deputy does the kernel's part (deputy/call_runner.cc waitForeground), the shim tells
// it whether the job ignores or blocks that signal (kNoTtin, kNoTtou).
constexpr int terminalStopSignal(const Row& row) {
  if (row.has(kTakesInput)) return SIGTTIN;
  if (row.has(kPipelinable) && !row.has(kPositioned)) return SIGTTOU;
  return 0;
}

// Whether the readiness tokens of the call's fd (argument 0) are taken before it: only
// streams have readiness stand-ins (a file's read skips that).
constexpr bool drainsReadiness(const Row& row, bool fdIsStream) { return row.has(kTakesInput) && fdIsStream; }

// Whether a call with this count goes home in kMaxIo pieces.
constexpr bool isSplit(const Row& row, uint64_t count) { return row.has(kSplitIo) && count > kMaxIo; }

// For a Handler::SetsBlockingMode call that succeeded on a stream: whether its writes
// may be pipelined from now on (blocking mode). F_SETFL's flags are an int argument,
// FIONBIO's a pointer to an int (the row's argument kind says which).
inline bool pipelinesAfter(const Row& row, const int64_t a[6]) {
  if (row.args[2].kind == Arg::Int) return !(a[2] & O_NONBLOCK);
  return *reinterpret_cast<const int*>(a[2]) == 0;
}

// Flags of a new home socket (SOCK_NONBLOCK, SOCK_CLOEXEC): socket's type argument;
// accept4's flags (accept has none).
constexpr int64_t newSocketFlags(const Row& row, const int64_t a[6]) {
  if (row.handler == Handler::NewSocket) return a[1] & (SOCK_NONBLOCK | SOCK_CLOEXEC);
  return row.nargs > 3 ? a[3] : 0;
}

// Whether a trapped call that stays here may block, so that it must run with the
// application's signal mask rather than the handler's (everything blocked). `row`: the
// table's row for the call, or nullptr. A row says it itself; the list below is the
// system calls without a row that never wait, and has no call the table has.
constexpr bool neverBlocksHere(const Row* row, long nr) {
  if (row != nullptr) return row->blocking == Blocking::Never;
  switch (nr) {
    case SYS_fstat: case SYS_mmap: case SYS_mprotect: case SYS_munmap: case SYS_mremap: case SYS_madvise:
    case SYS_brk: case SYS_rt_sigaction: case SYS_getpid: case SYS_gettid: case SYS_getuid: case SYS_geteuid:
    case SYS_getgid: case SYS_getegid: case SYS_clock_gettime: case SYS_clock_getres: case SYS_gettimeofday:
    case SYS_time: case SYS_sched_yield: case SYS_uname: case SYS_getrlimit: case SYS_prlimit64:
    case SYS_set_robust_list: case SYS_rseq: case SYS_arch_prctl: case SYS_prctl: case SYS_exit:
    case SYS_exit_group: case SYS_sigaltstack: case SYS_dup2: case SYS_pipe2: case SYS_eventfd2:
    case SYS_epoll_create1: case SYS_epoll_ctl: case SYS_memfd_create: case SYS_sched_getaffinity:
    case SYS_getrusage: case SYS_times: case SYS_sysinfo: case SYS_umask: case SYS_tgkill: case SYS_tkill:
    case SYS_getpgrp: case SYS_readlink: case SYS_access:
    case SYS_set_tid_address: case SYS_getrandom: case SYS_fork: case SYS_clone: case SYS_clone3:
      return true;
    default:
      return false;
  }
}

// For a Handler::WaitsForLock call: whether it may wait for another holder, and if so
// its non-blocking form in `attempt` (F_SETLKW → F_SETLK, F_OFD_SETLKW → F_OFD_SETLK,
// flock with LOCK_NB), which the shim sends home instead, again after each pause. An
// unlock, or a flock that says LOCK_NB, never waits: it goes as it is.
inline bool lockAttempt(const Row& row, const int64_t a[6], int64_t attempt[6]) {
  for (int i = 0; i < 6; ++i) attempt[i] = a[i];
  if (row.sysno == SYS_flock) {
    if ((a[1] & LOCK_NB) || (a[1] & LOCK_UN)) return false;
    attempt[1] = a[1] | LOCK_NB;
    return true;
  }
  if (row.selectorArg != 1) return false;
  if (row.selector == F_SETLKW) attempt[1] = F_SETLK;
  else if (row.selector == F_OFD_SETLKW) attempt[1] = F_OFD_SETLK;
  else return false;
  return true;
}

// Whether a failed non-blocking attempt (lockAttempt) failed only because another
// process holds the lock: fcntl says EAGAIN or EACCES, flock EWOULDBLOCK (EAGAIN).
constexpr bool lockIsTaken(long result) { return result == -EAGAIN || result == -EACCES; }

enum class Where { Local, Home, Both };

// Whether a call the table can forward concerns home. A NULL path after a dirfd names
// that fd itself for the kernel (utimensat's, which is futimens; newfstatat and statx
// with AT_EMPTY_PATH): the call follows the fd. Facts answers, for this process:
//   bool cwdIsLocal()                            the working directory is this host's
//   bool internetSocketsAtHome()                 the network policy makes them at home
//   bool pathIsHome(int64_t dirfd, const char*)  a path, resolved against dirfd
//   bool isHomeFd(int64_t fd)
template <class Facts>
Where whereRowGoes(const Row& row, const int64_t a[6], const Facts& facts) {
  switch (row.locality) {
    case Locality::Cwd: return facts.cwdIsLocal() ? Where::Local : Where::Home;
    case Locality::Home: return Where::Home;
    case Locality::NetworkPolicy:
      return facts.internetSocketsAtHome() && (a[0] == AF_INET || a[0] == AF_INET6) ? Where::Home : Where::Local;
    case Locality::ShimsOwn: return Where::Local;
    case Locality::ByArgs: break;
  }
  bool home = false, local = false, paths = false;
  for (uint8_t i = 0; i < row.nargs; ++i) {
    if (row.args[i].kind != Arg::Path) continue;
    paths = true;
    const int64_t dirfd = i > 0 && row.args[i - 1].kind == Arg::Fd ? a[i - 1] : AT_FDCWD;
    const char* path = reinterpret_cast<const char*>(a[i]);
    const bool fdItself = path == nullptr && static_cast<int32_t>(dirfd) != AT_FDCWD;
    ((fdItself ? facts.isHomeFd(dirfd) : facts.pathIsHome(dirfd, path)) ? home : local) = true;
  }
  if (paths) return home && local ? Where::Both : home ? Where::Home : Where::Local;
  if (row.fdArg >= 0 && facts.isHomeFd(a[row.fdArg])) return Where::Home;
  return Where::Local;
}

inline constexpr char kEmptyPathString[] = "";

// The old path calls (open, stat, rename...: MIG_OLD_FORM in forward_calls.def) become
// the *at call they are for the kernel, the only form the table has a row for.
inline void toAtForm(long& nr, int64_t a[6]) {
  [[maybe_unused]] const int64_t kCwd = AT_FDCWD;
  [[maybe_unused]] const int64_t kEmptyPath = reinterpret_cast<int64_t>(kEmptyPathString);
  switch (nr) {
#define MIG_OLD_FORM(old, sysno, a0, a1, a2, a3, a4, a5) \
  case old: {                                             \
    const int64_t at[6] = {a0, a1, a2, a3, a4, a5};       \
    nr = sysno;                                           \
    for (int i = 0; i < 6; ++i) a[i] = at[i];             \
    return;                                               \
  }
#include "rsc/forward_calls.def"
    default: return;
  }
}

// --- the deputy ---------------------------------------------------------------------

// What the deputy knows of the fd a call works on (fstat, F_GETFL).
enum class FdKind {
  None,               // no fd, or not an open one
  File,               // regular file, directory, block device: calls return at once
  Stream,             // pipe, terminal, socket in blocking mode (or mode unknown)
  NonBlockingStream,
};

// How the deputy runs a call. At once, right here, without a worker's hand-off (a
// third of the round trip of a small write): calls on files and directories, path
// calls. Calls on a stream are the ones the job's thread may send twice (it lets a
// checkpoint in while it waits for them, and sends them again from where it resumes):
// they are answered once, and run on a worker when they may block (blocking mode; a
// pipelined write, which the deputy finishes even on a non-blocking fd).
enum class Runs { Here, HereOnce, Worker };

constexpr Runs deputyRuns(const Row& row, FdKind fd, bool pipelined) {
  if (row.deputy == DeputyRuns::Worker) return Runs::Worker;
  switch (fd) {
    case FdKind::None: case FdKind::File: return Runs::Here;
    case FdKind::Stream: return Runs::Worker;
    case FdKind::NonBlockingStream: return pipelined ? Runs::Worker : Runs::HereOnce;
  }
  return Runs::Worker;
}

// Whether the deputy's watch of the call's fd (argument 0) looks again after it.
constexpr bool rearmsReadiness(const Row& row) { return row.has(kTakesInput); }

// Whether a request may come without waiting for its result (RequestHeader kNoReply).
constexpr bool mayComePipelined(const Row& row) { return row.has(kPipelinable); }

}  // namespace mig::rsc
