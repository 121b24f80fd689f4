// rsc/forward_table.h: the table of system calls that may be forwarded home, one row
// per call, made from the one list in rsc/forward_calls.def. A row says everything
// about its call: the marshalling spec (the shim encodes from it, rsc/marshal.h), the
// libc function the deputy runs through libffi (rsc/dispatch.h; nothing outside the
// table runs at home), and the properties that the shim's and the deputy's decisions
// read (rsc/call_policy.h): how it may block, whether it takes input, may be
// pipelined, waits for pipelined writes, where it goes, which handler takes it, and
// how glibc's function differs from the kernel's call. Adding a forwarded call is
// adding a line to forward_calls.def (and, only for behaviour no Handler has yet, a
// Handler value and its code in the shim); nothing else decides by call id.
//
// Async-signal-safe: the table is constant data and the lookups only read it, so the
// shim may use them from a SIGSYS handler.
#pragma once

#include <stdint.h>

namespace mig::rsc {

// Row ids travel in RequestHeader::call: the numbers (in forward_calls.def) are part of
// the wire format and never change meaning.
enum class CallId : uint32_t {
#define MIG_CALL(name, id, ...) name = id,
#include "rsc/forward_calls.def"
};

// How many calls the real table has; ids run from 1 to this.
inline constexpr uint32_t kCallCount = 0
#define MIG_CALL(name, id, ...) +1
#include "rsc/forward_calls.def"
    ;

// getsockopt's value always travels as a buffer this big (the longest option the
// shim passes through); the shim copies what the caller's length allows.
inline constexpr uint16_t kSockoptSize = 256;

// What an argument is. Input kinds (InBuf, Path, InStruct, InOutStruct) travel as
// request payloads, output kinds (OutBuf, OutStruct, InOutStruct) as reply payloads;
// Int and Fd travel only in RequestHeader::args.
enum class Arg : uint8_t { None, Int, Fd, InBuf, OutBuf, Path, InStruct, OutStruct, InOutStruct };

struct ArgSpec {
  Arg kind;
  uint8_t lenArg;  // InBuf/OutBuf: index of the argument holding the byte count
  uint16_t size;   // InStruct/OutStruct/InOutStruct: the struct's size in bytes
};

// The C return type of the libc function, which decides how the deputy reads it.
enum class Ret : uint8_t {
  Long,     // ssize_t/off_t: -1 and errno on failure
  Int,      // int/pid_t: -1 and errno on failure
  Pointer,  // a pointer, NULL on failure (getcwd; a Fixup says what the kernel returns)
};

// How long a call may wait. It decides how the shim waits for home's answer, and how
// the shim runs the call when it stays here.
enum class Blocking : uint8_t {
  Never,     // returns at once: run here, it keeps the handler's signals blocked
  Briefly,   // may take a while (a disk, a terminal draining, a FIFO's open) but waits
             // for no one here: the shim gives home's answer a timeout; run here, it
             // runs with the application's signal mask
  OnStream,  // on a pipe, terminal or socket, may wait for the other end as long as it
             // likes: the shim's wait for home lets a checkpoint in and has no timeout
  Always,    // may wait as long as it likes whatever its fd (a child, a client, the
             // network): likewise, always
};

// Yes-or-no properties, or-ed into Row::traits.
enum Trait : uint16_t {
  kTakesInput = 1 << 0,            // takes input from its fd (argument 0): that fd's
                                   // readiness is looked at again after it
                                   // (shim/forward/readiness_stand_in.h)
  kPipelinable = 1 << 1,           // on a stream in blocking mode or a regular file at
                                   // home, sent without waiting for its result (a write:
                                   // fd, buffer, count[, offset])
  kReportsWriteFailures = 1 << 2,  // once it ran, reports a failed pipelined write on its
                                   // fd instead of its result (fsync: the data it syncs
                                   // did not get there; close: the last chance to tell)
  kSplitIo = 1 << 3,               // a count (argument 2) above kMaxIo goes as
                                   // consecutive pieces of the buffer (argument 1) ...
  kPositioned = 1 << 4,            // ... advancing the offset in argument 3
  kSigpipeOnEpipe = 1 << 5,        // EPIPE at home raises SIGPIPE in the calling thread,
                                   // as the kernel would have here
};

// Which of the shim's handlers takes the call once it goes home (besides the default,
// which marshals, sends and waits: forwardRow).
enum class Handler : uint8_t {
  Plain,
  OpenFile,          // makes a home fd, mirrored here (fd_mirror.cc); O_CLOEXEC in argument 2
  ChangeDir,         // on success the working directory is home's
  SetsBlockingMode,  // O_NONBLOCK (an Int argument 2) or FIONBIO's int: a stream's writes
                     // are pipelined only in blocking mode
  NewSocket,         // socket_calls.cc: a home socket, mirrored, with a readiness stand-in
  Accept,            // ... the same from a listener (flags in argument 3, if it has one)
  Receive,           // ... recvfrom with the source address in the caller's length
  SocketOption,      // ... getsockopt's value in the caller's length
  SocketName,        // ... getsockname/getpeername's address in the caller's length
  Kill,              // sigsys_handler.cc: home or here by the PID it names
  Wait4,             // ... likewise, and a wait for any child by where the children are
  Waitid,
  WaitsForLock,      // a lock call that may wait (F_SETLKW, F_OFD_SETLKW, flock without
                     // LOCK_NB): tried at home without waiting, again after a pause here
                     // (rsc::lockAttempt), so the deputy never blocks on it and a signal
                     // or a checkpoint can come in between
  ProcessGroup,      // setpgid: home, where the groups are, unless it names a child born here
};

// Where the shim sends a call it has a row for (Kill, Wait4 and Waitid: their handler).
enum class Locality : uint8_t {
  ByArgs,         // home if its paths are home's (a path follows its dirfd); without
                  // paths, if its fd (Row::fdArg) is a home fd
  Cwd,            // where the working directory is (getcwd)
  Home,           // always home (getppid: the parent is there)
  NetworkPolicy,  // internet sockets go home under the default network policy (socket)
  ShimsOwn,       // a question only the shim asks home (the file identity check): its
                  // sysno is kShimsOwnCall, which no kernel has, so a program trapped
                  // making that call runs it here and gets ENOSYS
};

// The system call number of the ShimsOwn rows: none of the kernel's.
inline constexpr long kShimsOwnCall = -1;

// Whether the call must run at home after the pipelined writes issued before it.
// Writes to streams: what can tell their order from a later call's is the stream
// itself or the parent a signal goes to. Writes to regular files (write-behind): every
// call but a stream's read waits for them (rsc::writesToWaitFor), as anything may look
// at the file (a read, fstat, stat of its path, mmap, a child at home).
enum class Ordering : uint8_t {
  OnStream,  // when its fd is a stream (a write, fcntl, tcsetattr or close on it)
  Always,    // always (kill: the parent reads what was written before the signal)
  Never,     // not for stream writes (a read: the prompt before it is on its way and
             // does not wait for the read either)
};

// Where the deputy runs the call.
enum class DeputyRuns : uint8_t {
  ByFd,    // by its fd: on files, directories and without an fd at once; on a stream
           // on a worker, or at once (answered once) in non-blocking mode
  Worker,  // always on a worker: it may block whatever the fd (open of a FIFO, a wait
           // for a child)
};

// Where glibc's function and the kernel's system call differ, and what the deputy does
// about it. (A parameter glibc has and the system call lacks, like faccessat's flags,
// is an Arg::None slot instead: the function gets 0.)
enum class Fixup : uint8_t {
  None,
  CwdLength,   // getcwd: glibc returns the buffer, allocates for NULL and says EINVAL
               // for size 0; the system call returns the path's length with its NUL and
               // says EFAULT and ERANGE
  RawSyscall,  // glibc's wrapper refuses what the kernel takes (utimensat's NULL path):
               // the deputy makes the system call itself, syscall(sysno, args...)
};

struct Row {
  CallId id{};
  long sysno = 0;                  // x86_64 system call number the shim traps
  const char* function = nullptr;  // libc function the deputy calls (Debian 12, glibc 2.36)
  uint8_t nargs = 0;               // parameters of `function`; an Arg::None slot below
                                   // nargs is one the system call lacks (the function gets 0)
  ArgSpec args[6] = {};
  Ret ret = Ret::Int;
  bool variadic = false;           // the function is variadic (fcntl, ioctl, openat) ...
  uint8_t fixedArgs = 0;           // ... with this many fixed parameters
  int8_t fdArg = -1;               // the argument naming the fd the call works on, -1 if
                                   // none (the first dirfd for *at calls; AT_FDCWD is a
                                   // value of it)
  int8_t selectorArg = -1;         // -1, or the argument (ioctl request, fcntl command)
  uint32_t selector = 0;           // that must equal `selector` (32 bits, as the kernel)

  // Behaviour (the enums above); call_policy.h turns these into decisions.
  Blocking blocking = Blocking::Briefly;
  uint16_t traits = 0;
  Handler handler = Handler::Plain;
  Locality locality = Locality::ByArgs;
  Ordering ordering = Ordering::OnStream;
  DeputyRuns deputy = DeputyRuns::ByFd;
  Fixup fixup = Fixup::None;

  constexpr bool has(Trait t) const { return (traits & t) != 0; }

  // The builders forward_calls.def uses on a row from call() (rsc/forward_rows.h).
  constexpr Row with(unsigned t) const { Row r = *this; r.traits = static_cast<uint16_t>(r.traits | t); return r; }
  constexpr Row handledBy(Handler h) const { Row r = *this; r.handler = h; return r; }
  constexpr Row goes(Locality l) const { Row r = *this; r.locality = l; return r; }
  constexpr Row ordered(Ordering o) const { Row r = *this; r.ordering = o; return r; }
  constexpr Row onDeputy(DeputyRuns d) const { Row r = *this; r.deputy = d; return r; }
  constexpr Row fixedUp(Fixup f) const { Row r = *this; r.fixup = f; return r; }
};

// A table of rows in id order (row i has id i + 1): the real one, or a test's.
struct Table {
  const Row* rows;
  uint32_t count;

  // The row for a trapped system call with these arguments, or nullptr when that call
  // (or that ioctl request, or that fcntl command) is not forwardable.
  const Row* find(long sysno, const int64_t args[6]) const {
    for (uint32_t i = 0; i < count; ++i) {
      const Row& r = rows[i];
      if (r.sysno != sysno) continue;
      if (r.selectorArg < 0 || static_cast<uint32_t>(args[r.selectorArg]) == r.selector) return &r;
    }
    return nullptr;
  }

  // The row with this id, or nullptr for an unknown id.
  const Row* byId(uint32_t id) const { return id == 0 || id > count ? nullptr : &rows[id - 1]; }
};

// Longest path accepted, NUL included (PATH_MAX).
inline constexpr uint64_t kMaxPath = 4096;

// The table made from forward_calls.def.
const Table& forwardTable();

// Its lookups (see Table).
inline const Row* findRow(long sysno, const int64_t args[6]) { return forwardTable().find(sysno, args); }
inline const Row* rowById(uint32_t id) { return forwardTable().byId(id); }

// The row of a known call (every CallId has one), for the shim's own uses of a call.
inline const Row& rowOf(CallId id) { return *rowById(static_cast<uint32_t>(id)); }

// The whole table, for tests.
inline uint32_t rowCount() { return forwardTable().count; }
inline const Row& rowAt(uint32_t index) { return forwardTable().rows[index]; }

}  // namespace mig::rsc
