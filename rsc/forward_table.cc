// rsc/forward_table.cc: the rows of the forwarded-call table (see forward_table.h).
// Constant data checked at compile time, so the shim can read it from a signal
// handler and a bad row never reaches a build.
#include "rsc/forward_table.h"

#include "rsc/payload.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <initializer_list>

namespace mig::rsc {
namespace {

// Sizes of the structs that cross the wire, in their kernel layout (which is what
// the raw system call the shim trapped reads or writes).
constexpr uint16_t kStatSize = 144;       // struct stat on x86_64
constexpr uint16_t kStatxSize = 256;      // struct statx
constexpr uint16_t kTermiosSize = 36;     // the kernel's struct termios (NCCS 19), not glibc's
constexpr uint16_t kWinsizeSize = 8;      // struct winsize
constexpr uint16_t kIntSize = 4;          // int / pid_t
constexpr uint16_t kRusageSize = 144;     // struct rusage
constexpr uint16_t kSiginfoSize = 128;    // siginfo_t
constexpr uint16_t kSockaddrSize = 128;   // struct sockaddr_storage
constexpr uint16_t kOffSize = 8;          // off_t
static_assert(sizeof(struct stat) == kStatSize);
static_assert(sizeof(struct statx) == kStatxSize);
static_assert(sizeof(struct winsize) == kWinsizeSize);
static_assert(sizeof(struct rusage) == kRusageSize);
static_assert(sizeof(siginfo_t) == kSiginfoSize);
static_assert(sizeof(struct sockaddr_storage) == kSockaddrSize);

constexpr ArgSpec N{Arg::None, 0, 0};
constexpr ArgSpec I{Arg::Int, 0, 0};
constexpr ArgSpec F{Arg::Fd, 0, 0};
constexpr ArgSpec P{Arg::Path, 0, 0};
constexpr ArgSpec inBuf(uint8_t lenArg) { return {Arg::InBuf, lenArg, 0}; }
constexpr ArgSpec outBuf(uint8_t lenArg) { return {Arg::OutBuf, lenArg, 0}; }
constexpr ArgSpec inStruct(uint16_t size) { return {Arg::InStruct, 0, size}; }
constexpr ArgSpec outStruct(uint16_t size) { return {Arg::OutStruct, 0, size}; }
constexpr ArgSpec inOutStruct(uint16_t size) { return {Arg::InOutStruct, 0, size}; }

constexpr Row call(CallId id, long sysno, const char* function, Ret ret, int8_t fdArg,
                   std::initializer_list<ArgSpec> args) {
  Row r{id, sysno, function, static_cast<uint8_t>(args.size()),
        {N, N, N, N, N, N}, ret, false, 0, fdArg, -1, 0};
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
constexpr Row fcntlRow(CallId id, uint32_t command) {
  Row r = variadic(call(id, SYS_fcntl, "fcntl", Ret::Int, 0, {F, I, I}), 2);
  r.selectorArg = 1;
  r.selector = command;
  return r;
}

constexpr Row ioctlRow(CallId id, uint32_t request, ArgSpec third) {
  Row r = variadic(call(id, SYS_ioctl, "ioctl", Ret::Int, 0, {F, I, third}), 2);
  r.selectorArg = 1;
  r.selector = request;
  return r;
}

using C = CallId;

// In CallId order (checked below), so rowById is an index.
constexpr Row kTable[] = {
    call(C::Read, SYS_read, "read", Ret::Long, 0, {F, outBuf(2), I}),
    call(C::Write, SYS_write, "write", Ret::Long, 0, {F, inBuf(2), I}),
    call(C::Pread64, SYS_pread64, "pread64", Ret::Long, 0, {F, outBuf(2), I, I}),
    call(C::Pwrite64, SYS_pwrite64, "pwrite64", Ret::Long, 0, {F, inBuf(2), I, I}),
    call(C::Lseek, SYS_lseek, "lseek", Ret::Long, 0, {F, I, I}),
    call(C::Close, SYS_close, "close", Ret::Int, 0, {F}),
    // The mode is variadic in glibc and read only with O_CREAT/O_TMPFILE, like the kernel.
    variadic(call(C::Openat, SYS_openat, "openat", Ret::Int, 0, {F, P, I, I}), 3),
    // glibc 2.33+ fstatat64 is newfstatat itself on x86_64 (fstat() is this call with
    // AT_EMPTY_PATH and ""), with the kernel's struct stat layout.
    call(C::Newfstatat, SYS_newfstatat, "fstatat64", Ret::Int, 0, {F, P, outStruct(kStatSize), I}),
    call(C::Statx, SYS_statx, "statx", Ret::Int, 0, {F, P, I, I, outStruct(kStatxSize)}),
    // The faccessat system call has no flags argument; glibc's faccessat with flags 0
    // is exactly it.
    call(C::Faccessat, SYS_faccessat, "faccessat", Ret::Int, 0, {F, P, I, N}),
    call(C::Faccessat2, SYS_faccessat2, "faccessat", Ret::Int, 0, {F, P, I, I}),
    call(C::Unlinkat, SYS_unlinkat, "unlinkat", Ret::Int, 0, {F, P, I}),
    call(C::Renameat, SYS_renameat, "renameat", Ret::Int, 0, {F, P, F, P}),
    call(C::Renameat2, SYS_renameat2, "renameat2", Ret::Int, 0, {F, P, F, P, I}),
    call(C::Mkdirat, SYS_mkdirat, "mkdirat", Ret::Int, 0, {F, P, I}),
    call(C::Readlinkat, SYS_readlinkat, "readlinkat", Ret::Long, 0, {F, P, outBuf(3), I}),
    call(C::Getdents64, SYS_getdents64, "getdents64", Ret::Long, 0, {F, outBuf(2), I}),
    call(C::Ftruncate, SYS_ftruncate, "ftruncate", Ret::Int, 0, {F, I}),
    call(C::Fsync, SYS_fsync, "fsync", Ret::Int, 0, {F}),
    call(C::Fdatasync, SYS_fdatasync, "fdatasync", Ret::Int, 0, {F}),
    call(C::Fchmod, SYS_fchmod, "fchmod", Ret::Int, 0, {F, I}),
    // Like faccessat: the system call has no flags, glibc's fchmodat with 0 is it.
    call(C::Fchmodat, SYS_fchmodat, "fchmodat", Ret::Int, 0, {F, P, I, N}),
    // Only the integer-argument commands; locks (whose struct and blocking semantics
    // need more than a row) are not forwarded.
    fcntlRow(C::FcntlGetfd, F_GETFD),
    fcntlRow(C::FcntlSetfd, F_SETFD),
    fcntlRow(C::FcntlGetfl, F_GETFL),
    fcntlRow(C::FcntlSetfl, F_SETFL),
    fcntlRow(C::FcntlDupfd, F_DUPFD),
    fcntlRow(C::FcntlDupfdCloexec, F_DUPFD_CLOEXEC),
    // glibc's ioctl is the bare system call on x86_64, so the kernel termios layout
    // the application passed is what the deputy's kernel sees.
    ioctlRow(C::IoctlTcgets, TCGETS, outStruct(kTermiosSize)),
    ioctlRow(C::IoctlTcsets, TCSETS, inStruct(kTermiosSize)),
    ioctlRow(C::IoctlTcsetsw, TCSETSW, inStruct(kTermiosSize)),
    ioctlRow(C::IoctlTcsetsf, TCSETSF, inStruct(kTermiosSize)),
    ioctlRow(C::IoctlTiocgwinsz, TIOCGWINSZ, outStruct(kWinsizeSize)),
    ioctlRow(C::IoctlTiocgpgrp, TIOCGPGRP, outStruct(kIntSize)),
    ioctlRow(C::IoctlFionread, FIONREAD, outStruct(kIntSize)),
    call(C::Chdir, SYS_chdir, "chdir", Ret::Int, -1, {P}),
    call(C::Fchdir, SYS_fchdir, "fchdir", Ret::Int, 0, {F}),
    call(C::Getcwd, SYS_getcwd, "getcwd", Ret::CwdPointer, -1, {outBuf(1), I}),
    call(C::Kill, SYS_kill, "kill", Ret::Int, -1, {I, I}),
    call(C::Getppid, SYS_getppid, "getppid", Ret::Int, -1, {}),
    call(C::Dup, SYS_dup, "dup", Ret::Int, 0, {F}),
    call(C::Dup3, SYS_dup3, "dup3", Ret::Int, 0, {F, F, I}),
    // Children the job forked at home are the deputy's now (the same process).
    call(C::Wait4, SYS_wait4, "wait4", Ret::Int, -1, {I, outStruct(kIntSize), I, outStruct(kRusageSize)}),
    // glibc's waitid has no rusage argument: the system call's fifth stays untouched.
    call(C::Waitid, SYS_waitid, "waitid", Ret::Int, -1, {I, I, outStruct(kSiginfoSize), I}),
    // Sockets the job had at home stay there. send/recv on them; the address sendto
    // names (none on a connected socket) goes along; recvfrom's source comes back as
    // a whole sockaddr_storage, into the shim's own (see Getsockname).
    call(C::Sendto, SYS_sendto, "sendto", Ret::Long, 0, {F, inBuf(2), I, I, inBuf(5), I}),
    call(C::Recvfrom, SYS_recvfrom, "recvfrom", Ret::Long, 0,
         {F, outBuf(2), I, I, outStruct(kSockaddrSize), inOutStruct(kIntSize)}),
    call(C::Shutdown, SYS_shutdown, "shutdown", Ret::Int, 0, {F, I}),
    // A listening socket at home accepts there; the new connection is a home fd like
    // an opened file (the shim mirrors it, and asks for the peer's address after).
    call(C::Accept, SYS_accept, "accept", Ret::Int, 0, {F, N, N}),
    call(C::Accept4, SYS_accept4, "accept4", Ret::Int, 0, {F, N, N, I}),
    // Always a whole sockaddr_storage: the shim passes its own and copies what the
    // caller's buffer holds (the kernel's truncation rule).
    call(C::Getsockname, SYS_getsockname, "getsockname", Ret::Int, 0, {F, outStruct(kSockaddrSize), inOutStruct(kIntSize)}),
    call(C::Getpeername, SYS_getpeername, "getpeername", Ret::Int, 0, {F, outStruct(kSockaddrSize), inOutStruct(kIntSize)}),
    // Options of a socket at home are its own (TCP_NODELAY, SO_KEEPALIVE, SO_ERROR
    // after a non-blocking connect...). getsockopt's value: see kSockoptSize.
    call(C::Setsockopt, SYS_setsockopt, "setsockopt", Ret::Int, 0, {F, I, I, inBuf(4), I}),
    call(C::Getsockopt, SYS_getsockopt, "getsockopt", Ret::Int, 0, {F, I, I, outStruct(kSockoptSize), inOutStruct(kIntSize)}),
    // Internet sockets a migrated job creates are made at home, where its address is
    // (unless it was moved with --local-net or --rebind): the shim decides, and mirrors the fd.
    call(C::Socket, SYS_socket, "socket", Ret::Int, -1, {I, I, I}),
    call(C::Bind, SYS_bind, "bind", Ret::Int, 0, {F, inBuf(2), I}),
    call(C::Listen, SYS_listen, "listen", Ret::Int, 0, {F, I}),
    call(C::Connect, SYS_connect, "connect", Ret::Int, 0, {F, inBuf(2), I}),
    // Non-blocking mode the way libuv sets it on Linux (like F_SETFL O_NONBLOCK).
    ioctlRow(C::IoctlFionbio, FIONBIO, inStruct(kIntSize)),
    // A file at home into a socket at home (nginx): both ends are there, so is the copy.
    // The shim sends only that case; the offset may be NULL (the file's position).
    call(C::Sendfile, SYS_sendfile, "sendfile", Ret::Long, 0, {F, F, inOutStruct(kOffSize), I}),
};

constexpr uint32_t kCount = sizeof(kTable) / sizeof(kTable[0]);

// Every promise the shim and the deputy rely on, checked once here instead of at
// each use.
constexpr bool tableIsSound() {
  for (uint32_t i = 0; i < kCount; ++i) {
    const Row& r = kTable[i];
    if (static_cast<uint32_t>(r.id) != i + 1) return false;
    if (r.nargs > 6 || r.function == nullptr) return false;
    if (r.variadic && (r.fixedArgs == 0 || r.fixedArgs >= r.nargs)) return false;
    if (r.fdArg >= r.nargs || (r.fdArg >= 0 && r.args[r.fdArg].kind != Arg::Fd)) return false;
    if (r.selectorArg >= r.nargs || (r.selectorArg >= 0 && r.args[r.selectorArg].kind != Arg::Int))
      return false;
    for (uint8_t a = 0; a < 6; ++a) {
      const ArgSpec& s = r.args[a];
      if (a >= r.nargs && s.kind != Arg::None) return false;
      if ((s.kind == Arg::InBuf || s.kind == Arg::OutBuf) &&
          (s.lenArg >= r.nargs || r.args[s.lenArg].kind != Arg::Int))
        return false;
      if (isStruct(s.kind) && s.size == 0) return false;
    }
    for (uint32_t j = 0; j < i; ++j) {  // no two rows answer the same trapped call
      const Row& o = kTable[j];
      if (o.sysno == r.sysno && (r.selectorArg < 0 || o.selector == r.selector)) return false;
    }
  }
  return true;
}
static_assert(tableIsSound(), "forward table row inconsistent");

}  // namespace

const Row* findRow(long sysno, const int64_t args[6]) {
  for (const Row& r : kTable) {
    if (r.sysno != sysno) continue;
    if (r.selectorArg < 0 || static_cast<uint32_t>(args[r.selectorArg]) == r.selector) return &r;
  }
  return nullptr;
}

const Row* rowById(uint32_t id) {
  if (id == 0 || id > kCount) return nullptr;
  return &kTable[id - 1];
}

uint32_t rowCount() { return kCount; }

const Row& rowAt(uint32_t index) { return kTable[index]; }

}  // namespace mig::rsc
