// See park_signals.h.
#include "shim/park_signals.h"

#include "shim/proc_dir.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"
#include "shim/signal_verdict.h"

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/file.h>
#include <sys/syscall.h>

// The first byte of libmig.so as loaded (the linker's symbol, one per object).
extern "C" const ElfW(Ehdr) __ehdr_start __attribute__((visibility("hidden")));

namespace mig::shim {
namespace {

constexpr uint16_t kSyscallInsn = 0x050f;  // x86-64 `syscall`, as two little-endian bytes
constexpr long kSyscallInsnLen = 2;

uint64_t bit(int sig) { return uint64_t{1} << (sig - 1); }

// Was the thread in libmig.so's own code (a wait of the SIGSYS handler, whose calls the
// forwarding settles itself), not the application's?
bool inShim(uint64_t ip) {
  const auto base = reinterpret_cast<uint64_t>(&__ehdr_start);
  const auto* ph = reinterpret_cast<const ElfW(Phdr)*>(base + __ehdr_start.e_phoff);
  uint64_t end = base;
  for (int i = 0; i < __ehdr_start.e_phnum; ++i) {
    if (ph[i].p_type == PT_LOAD && base + ph[i].p_vaddr + ph[i].p_memsz > end) end = base + ph[i].p_vaddr + ph[i].p_memsz;
  }
  return ip >= base && ip < end;
}

// A call the kernel restarts after a handler with SA_RESTART and ends with EINTR after
// one without (it returned -ERESTARTSYS, signal(7)): the waits for a lock, a child, a
// pipe, terminal or socket. Set up for its restart, the context is back at its
// `syscall` instruction with the call's number in rax.
bool restartsOnlyWithSaRestart(const greg_t* g) {
  switch (g[REG_RAX]) {
    case SYS_fcntl: return g[REG_RSI] == F_SETLKW || g[REG_RSI] == F_OFD_SETLKW;
    case SYS_flock: return (g[REG_RSI] & LOCK_NB) == 0;
    case SYS_read: case SYS_readv: case SYS_write: case SYS_writev:
    case SYS_wait4: case SYS_waitid:
    case SYS_accept: case SYS_accept4: case SYS_connect:
    case SYS_recvfrom: case SYS_recvmsg: case SYS_sendto: case SYS_sendmsg:
      return true;
    default: return false;
  }
}

// Signals pending for this thread alone (SigPnd of its status; ShdPnd is its process's).
uint64_t ownPending() {
  uint64_t set = 0;
  forEachLine("/proc/thread-self/status", [&](const char* line) {
    const char* key = "SigPnd:";
    for (; *key != '\0'; ++key, ++line) {
      if (*line != *key) return true;
    }
    for (; *line != '\0'; ++line) {
      const char c = *line;
      if (c >= '0' && c <= '9') set = set << 4 | static_cast<uint64_t>(c - '0');
      else if (c >= 'a' && c <= 'f') set = set << 4 | static_cast<uint64_t>(c - 'a' + 10);
    }
    return false;
  });
  return set;
}

// Makes `sig` this thread's: a signal pending for the process goes to whichever thread
// lets it in first, and only the thread that takes it may see its call end. Moved from
// the process's queue to the thread's with its siginfo (the kernel lets a thread queue
// any siginfo to itself). False if another thread took it first: then the call goes on
// as the kernel set it up.
bool claim(int sig) {
  if ((ownPending() & bit(sig)) != 0) return true;
  uint64_t set = bit(sig);
  siginfo_t info;
  struct timespec now = {0, 0};
  if (rawSyscall(SYS_rt_sigtimedwait, reinterpret_cast<long>(&set), reinterpret_cast<long>(&info),
                 reinterpret_cast<long>(&now), 8) != sig) {
    return false;
  }
  return rawSyscall(SYS_rt_tgsigqueueinfo, rawSyscall(SYS_getpid), rawSyscall(SYS_gettid), sig,
                    reinterpret_cast<long>(&info)) == 0;
}

}  // namespace

void settleInterruptedCall(ucontext_t* uc) {
  greg_t* g = uc->uc_mcontext.gregs;
  const auto ip = static_cast<uint64_t>(g[REG_RIP]);
  if (inShim(ip)) return;
  // Set up for a restart: back at the `syscall` instruction, its number in rax.
  const bool restarting = *reinterpret_cast<const uint16_t*>(ip) == kSyscallInsn && restartsOnlyWithSaRestart(g);
  // Ended with EINTR, which a wrapper of interrupted_calls.cc would make again.
  const bool ended = t_checkpointInterrupted && g[REG_RAX] == -EINTR;
  if (!restarting && !ended) return;
  // The signal that decides (signal_verdict.h): only a handler changes what the call
  // does (a default that ends the process ends it anyway), and with SA_RESTART only
  // for a wrapped call, which ends with EINTR when any handler runs.
  uint64_t pending = 0;
  if (rawSyscall(SYS_rt_sigpending, reinterpret_cast<long>(&pending), 8) != 0) return;
  const Verdict v = signalVerdict(pending & ~*reinterpret_cast<const uint64_t*>(&uc->uc_sigmask) & ~bit(kCheckpointSignal),
                                  kernelAction);
  if (!v.handled || (restarting && !v.interrupts) || !claim(v.sig)) return;
  t_checkpointInterrupted = 0;  // the wrapper returns the EINTR
  if (restarting) {
    g[REG_RAX] = -EINTR;
    g[REG_RIP] += kSyscallInsnLen;
  }
}

}  // namespace mig::shim
