// rsc/forward_rows.h: the words rsc/forward_calls.def is written in (argument kinds,
// struct sizes, the row builders) and the checks every table must pass. Included where
// a table is made: forward_table.cc for the real one, tests for theirs.
#pragma once

#include "rsc/forward_table.h"
#include "rsc/file_identity.h"
#include "rsc/payload.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <initializer_list>

namespace mig::rsc::rows {

// Sizes of the structs that cross the wire, in their kernel layout (which is what the
// raw system call the shim trapped reads or writes).
inline constexpr uint16_t kStatSize = 144;      // struct stat on x86_64
inline constexpr uint16_t kStatxSize = 256;     // struct statx
inline constexpr uint16_t kTermiosSize = 36;    // the kernel's struct termios (NCCS 19), not glibc's
inline constexpr uint16_t kWinsizeSize = 8;     // struct winsize
inline constexpr uint16_t kIntSize = 4;         // int / pid_t
inline constexpr uint16_t kRusageSize = 144;    // struct rusage
inline constexpr uint16_t kSiginfoSize = 128;   // siginfo_t
inline constexpr uint16_t kSockaddrSize = 128;  // struct sockaddr_storage
inline constexpr uint16_t kOffSize = 8;         // off_t
inline constexpr uint16_t kFlockSize = 32;      // struct flock (flock64 on x86_64)
static_assert(sizeof(struct stat) == kStatSize);
static_assert(sizeof(struct statx) == kStatxSize);
static_assert(sizeof(struct winsize) == kWinsizeSize);
static_assert(sizeof(struct rusage) == kRusageSize);
static_assert(sizeof(siginfo_t) == kSiginfoSize);
static_assert(sizeof(struct sockaddr_storage) == kSockaddrSize);
static_assert(sizeof(struct flock) == kFlockSize);

inline constexpr ArgSpec N{Arg::None, 0, 0};
inline constexpr ArgSpec I{Arg::Int, 0, 0};
inline constexpr ArgSpec F{Arg::Fd, 0, 0};
inline constexpr ArgSpec P{Arg::Path, 0, 0};
constexpr ArgSpec inBuf(uint8_t lenArg) { return {Arg::InBuf, lenArg, 0}; }
constexpr ArgSpec outBuf(uint8_t lenArg) { return {Arg::OutBuf, lenArg, 0}; }
constexpr ArgSpec inStruct(uint16_t size) { return {Arg::InStruct, 0, size}; }
constexpr ArgSpec outStruct(uint16_t size) { return {Arg::OutStruct, 0, size}; }
constexpr ArgSpec inOutStruct(uint16_t size) { return {Arg::InOutStruct, 0, size}; }

// A row with the default behaviour (Row's member initialisers) but its blocking, which
// every row must decide.
constexpr Row call(long sysno, const char* function, Ret ret, Blocking blocking, int8_t fdArg,
                   std::initializer_list<ArgSpec> args) {
  Row r;
  r.sysno = sysno;
  r.function = function;
  r.ret = ret;
  r.blocking = blocking;
  r.fdArg = fdArg;
  r.nargs = static_cast<uint8_t>(args.size());
  uint8_t i = 0;
  for (const ArgSpec& a : args) r.args[i++] = a;
  return r;
}

constexpr Row variadic(Row r, uint8_t fixedArgs) {
  r.variadic = true;
  r.fixedArgs = fixedArgs;
  return r;
}

// fcntl and ioctl: one row per command, so each command is whitelisted on its own.
constexpr Row fcntlRow(uint32_t command) {
  Row r = variadic(call(SYS_fcntl, "fcntl", Ret::Int, Blocking::Briefly, 0, {F, I, I}), 2);
  r.selectorArg = 1;
  r.selector = command;
  return r;
}

// A lock command of fcntl: its third argument is a struct flock, read (set) or read and
// written back (get).
constexpr Row fcntlLockRow(uint32_t command, ArgSpec lock) {
  Row r = variadic(call(SYS_fcntl, "fcntl", Ret::Int, Blocking::Briefly, 0, {F, I, lock}), 2);
  r.selectorArg = 1;
  r.selector = command;
  return r;
}

constexpr Row ioctlRow(uint32_t request, ArgSpec third) {
  Row r = variadic(call(SYS_ioctl, "ioctl", Ret::Int, Blocking::Briefly, 0, {F, I, third}), 2);
  r.selectorArg = 1;
  r.selector = request;
  return r;
}

constexpr Row withId(CallId id, Row r) {
  r.id = id;
  return r;
}

// Every promise the shim and the deputy rely on, checked once per table (at compile
// time) instead of at each use.
constexpr bool tableIsSound(const Row* rows, uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) {
    const Row& r = rows[i];
    if (static_cast<uint32_t>(r.id) != i + 1) return false;  // byId is an index
    if (r.nargs > 6 || r.function == nullptr) return false;
    if (r.variadic && (r.fixedArgs == 0 || r.fixedArgs >= r.nargs)) return false;
    if (r.fdArg >= r.nargs || (r.fdArg >= 0 && r.args[r.fdArg].kind != Arg::Fd)) return false;
    if (r.selectorArg >= r.nargs || (r.selectorArg >= 0 && r.args[r.selectorArg].kind != Arg::Int)) return false;
    for (uint8_t a = 0; a < 6; ++a) {
      const ArgSpec& s = r.args[a];
      if (a >= r.nargs && s.kind != Arg::None) return false;
      if ((s.kind == Arg::InBuf || s.kind == Arg::OutBuf) &&
          (s.lenArg >= r.nargs || r.args[s.lenArg].kind != Arg::Int))
        return false;
      if (isStruct(s.kind) && s.size == 0) return false;
    }
    // What the properties' readers take for granted about the arguments.
    const bool fdFirst = r.fdArg == 0;
    if ((r.has(kTakesInput) || r.blocking == Blocking::OnStream || r.has(kReportsWriteFailures)) && !fdFirst)
      return false;  // the shim looks at (and the deputy watches) argument 0
    if (r.has(kSplitIo) && !(fdFirst && (r.args[1].kind == Arg::InBuf || r.args[1].kind == Arg::OutBuf) &&
                             r.args[1].lenArg == 2))
      return false;
    if (r.has(kPositioned) && (!r.has(kSplitIo) || r.args[3].kind != Arg::Int)) return false;
    if (r.has(kPipelinable) && !(r.has(kSplitIo) && r.args[1].kind == Arg::InBuf &&
                                 r.nargs == (r.has(kPositioned) ? 4 : 3) && r.ret == Ret::Long &&
                                 r.deputy == DeputyRuns::ByFd))
      return false;  // the relay joins pipelined writes as write(fd, buffer, count) or pwrite64's
    if (r.handler == Handler::SetsBlockingMode &&
        !(fdFirst && (r.args[2].kind == Arg::Int || (r.args[2].kind == Arg::InStruct && r.args[2].size == kIntSize))))
      return false;
    if (r.handler == Handler::OpenFile && r.args[2].kind != Arg::Int) return false;
    if ((r.ret == Ret::Pointer) != (r.fixup == Fixup::CwdLength)) return false;
    if (r.fixup == Fixup::CwdLength && r.args[0].kind != Arg::OutBuf) return false;
    if (r.fixup == Fixup::RawSyscall && (r.variadic || r.ret != Ret::Long)) return false;
    // No two rows answer the same trapped call (the shim's own questions are never
    // trapped calls: they share a number no kernel has and are named by id).
    for (uint32_t j = 0; j < i && r.locality != Locality::ShimsOwn; ++j) {
      const Row& o = rows[j];
      if (o.sysno == r.sysno && (r.selectorArg < 0 || o.selector == r.selector)) return false;
    }
  }
  return true;
}

}  // namespace mig::rsc::rows
