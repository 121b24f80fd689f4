// rsc/forward_table.h: the table of system calls that may be forwarded home, one row
// per call. The shim marshals from a row (rsc/marshal.h), the deputy executes the
// row's libc function through libffi (rsc/dispatch.h), and nothing outside the table
// runs at home: adding a forwarded call is adding a row in forward_table.cc.
//
// Async-signal-safe: the table is constant data and the lookups only read it, so the
// shim may use them from a SIGSYS handler.
#pragma once

#include <stdint.h>

namespace mig::rsc {

// Row ids travel in RequestHeader::call: the numbers are part of the wire format and
// never change meaning. New calls get new numbers at the end.
enum class CallId : uint32_t {
  Read = 1,
  Write = 2,
  Pread64 = 3,
  Pwrite64 = 4,
  Lseek = 5,
  Close = 6,
  Openat = 7,
  Newfstatat = 8,
  Statx = 9,
  Faccessat = 10,
  Faccessat2 = 11,
  Unlinkat = 12,
  Renameat = 13,
  Renameat2 = 14,
  Mkdirat = 15,
  Readlinkat = 16,
  Getdents64 = 17,
  Ftruncate = 18,
  Fsync = 19,
  Fdatasync = 20,
  Fchmod = 21,
  Fchmodat = 22,
  FcntlGetfd = 23,
  FcntlSetfd = 24,
  FcntlGetfl = 25,
  FcntlSetfl = 26,
  FcntlDupfd = 27,
  FcntlDupfdCloexec = 28,
  IoctlTcgets = 29,
  IoctlTcsets = 30,
  IoctlTcsetsw = 31,
  IoctlTcsetsf = 32,
  IoctlTiocgwinsz = 33,
  IoctlTiocgpgrp = 34,
  IoctlFionread = 35,
  Chdir = 36,
  Fchdir = 37,
  Getcwd = 38,
  Kill = 39,
  Getppid = 40,
  Dup = 41,
  Dup3 = 42,
  Wait4 = 43,
  Waitid = 44,
  Sendto = 45,
  Recvfrom = 46,
  Shutdown = 47,
  Accept = 48,
  Accept4 = 49,
  Getsockname = 50,
  Getpeername = 51,
  Setsockopt = 52,
  Getsockopt = 53,
  Socket = 54,
  Bind = 55,
  Listen = 56,
  Connect = 57,
  IoctlFionbio = 58,
  Sendfile = 59,
};

// Calls that take input from their fd: after one of them, a home fd's readiness must
// be looked at again (shim/forward/readiness_stand_in.h).
constexpr bool takesInput(CallId id) {
  return id == CallId::Read || id == CallId::Recvfrom || id == CallId::Accept || id == CallId::Accept4;
}

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
  Long,        // ssize_t/off_t: -1 and errno on failure
  Int,         // int/pid_t: -1 and errno on failure
  CwdPointer,  // getcwd's char*: NULL on failure; the deputy turns success into the
               // system call's result, the length of the path including its NUL
};

struct Row {
  CallId id;
  long sysno;            // x86_64 system call number the shim traps
  const char* function;  // libc function the deputy calls (Debian 12, glibc 2.36)
  uint8_t nargs;         // parameters of `function`; an Arg::None slot below nargs
                         // is one the system call lacks, and the function gets 0
  ArgSpec args[6];
  Ret ret;
  bool variadic;         // the function is variadic (fcntl, ioctl, openat) ...
  uint8_t fixedArgs;     // ... with this many fixed parameters
  int8_t fdArg;          // the argument naming the fd the call works on, -1 if none
                         // (the first dirfd for *at calls; AT_FDCWD is a value of it)
  int8_t selectorArg;    // -1, or the argument (ioctl request, fcntl command) that
  uint32_t selector;     // must equal `selector` (compared as the kernel does, 32 bits)
};

// Longest path accepted, NUL included (PATH_MAX).
inline constexpr uint64_t kMaxPath = 4096;

// The row for a trapped system call with these arguments, or nullptr when that call
// (or that ioctl request, or that fcntl command) is not forwardable.
const Row* findRow(long sysno, const int64_t args[6]);

// The row with this id, or nullptr for an unknown id.
const Row* rowById(uint32_t id);

// The row of a known call (every CallId has one).
inline const Row& rowOf(CallId id) { return *rowById(static_cast<uint32_t>(id)); }

// The whole table, for the deputy's per-row preparation and for tests.
uint32_t rowCount();
const Row& rowAt(uint32_t index);

}  // namespace mig::rsc
