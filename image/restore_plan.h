// The restore plan: a flat, fixed-layout description of what the restorer must do,
// derived from an image by ordinary C++ code (plan_builder.h) and consumed as is by
// the freestanding restorer (no libc, no Cap'n Proto, no allocation). Everything is
// plain integers; references are byte offsets from the start of the plan, so the
// plan can be handed over in a memfd and used wherever it is mapped.
//
//   Header | Region[regionCount] | Pages[pagesCount] | Thread[threadCount]
//          | SigAction[sigactionCount] | Fd[fdCount] | PendingSignal[pendingCount]
//          | PosixTimer[timerCount]
//          | strings (NUL-terminated, referenced by offset) | blob (signal frames, auxv)
//
// The restorer, in order: moves itself out of the way of the regions; creates
// every region, puts saved pages in place, sets final protections; moves the new
// kernel's [vvar]/[vvar_vclock]/[vdso] unit onto the old one's address; sets the mm
// layout (PR_SET_MM_MAP); installs sigactions and the ITIMER_REAL timer; sets
// FD_CLOEXEC per Fd and closes its own plan and image fds; writes ResumeInfo at
// resumeInfoAddr; starts every thread (clone with CLONE_SETTLS, CLONE_PARENT_SETTID
// and CLONE_CHILD_CLEARTID at tidAddress), each re-registering its robust list,
// rseq area and sigaltstack, queueing its pending signals, and finally executing
// rt_sigreturn with the stack pointer at sigframeAddr (or, with resumeEntry, calling
// the shim's entry, which does that rt_sigreturn itself).
//
// Call plan::validate() (plan_check.h) before trusting any field.
#pragma once

#include <stdint.h>

namespace mig::plan {

inline constexpr uint64_t kMagic = 0x314e414c5047494dull;  // "MIGPLAN1" little-endian
inline constexpr uint32_t kVersion = 5;  // 3: Thread::kernel, Thread::oldTid; 4: PosixTimer; 5: kSourceSysvShm
inline constexpr uint32_t kNoString = 0xffffffffu;
inline constexpr uint64_t kPage = 4096;

// How a region's address range is created before page contents are applied.
enum Source : uint32_t {
  kSourceZero = 0,  // anonymous mapping (private or shared per mapFlags), zero-filled
  kSourceFile = 1,  // mmap of `path` at `fileOffset`: unmodified file pages come from the file
  kSourceSysvShm = 2,  // shmat of the System V segment whose id is `reserved` (made again, filled,
                       // before the restorer runs: it holds the pages); fileOffset: kShmRemoveAfter
};
inline constexpr uint64_t kShmRemoveAfter = 1;  // IPC_RMID once attached (it had been removed)

// What a region is, for the regions the restorer treats specially.
enum Kind : uint32_t {
  kKindAnonymous = 0,
  kKindFile = 1,
  kKindHeap = 2,        // brk area: also set by PR_SET_MM_MAP
  kKindStack = 3,
  kKindVdso = 4,        // not mapped: the new kernel's vdso/vvar unit is moved here
  kKindVvar = 5,
  kKindVvarVclock = 6,
  kKindMemfd = 7,
};

// How saved pages are put into place.
// Never mapped from the image: a private mapping of the image file would give the
// saved bytes again after the job's MADV_DONTNEED, where private anonymous memory gives
// zeros and a private file mapping its own file's bytes (tests/features/memory.c).
enum PagesMethod : uint32_t {
  kPagesCopy = 1,  // pread into the region (whole pages, or a sparse pages section's
                   // extents: any bytes of a page)
  kPagesLazy = 2,  // left missing: the region is registered with a userfaultfd handed to the
                   // page server on Header::lazySocket (resources/lazy_pages.h), which fills it
};

struct Region {
  uint64_t start;
  uint64_t end;
  uint32_t prot;      // PROT_* to leave the region with
  uint32_t mapFlags;  // MAP_PRIVATE or MAP_SHARED, MAP_GROWSDOWN
  uint32_t source;    // Source
  uint32_t kind;      // Kind
  uint32_t path;      // string offset of the backing file, or kNoString
  uint32_t reserved;
  uint64_t fileOffset;
};
static_assert(sizeof(Region) == 48);

struct Pages {
  uint64_t addr;
  uint64_t len;
  uint64_t imageOffset;  // byte offset in the image file, page aligned (any, for kPagesCopy)
  uint32_t region;       // index of the Region that contains [addr, addr+len)
  uint32_t method;       // PagesMethod
};
static_assert(sizeof(Pages) == 32);

// A thread's state that the kernel keeps outside its registers and signal frame, as
// the shim reads it at the checkpoint (control::ThreadSlot) and the restorer sets it
// again (plan::Thread): one struct, so a field added is carried all the way.
struct ThreadKernelState {
  uint64_t fsBase;
  uint64_t gsBase;
  uint64_t tidAddress;    // PR_GET_TID_ADDRESS: glibc's struct pthread tid field, for
                          // CLONE_CHILD_CLEARTID/PARENT_SETTID
  uint64_t robustList;
  uint64_t robustListLen;
  uint64_t rseqAddr;
  uint32_t rseqLen;
  uint32_t rseqSig;
  uint64_t altStackSp;
  uint64_t altStackSize;
  int32_t altStackFlags;
  uint32_t reserved;      // zero (explicit padding: the structs holding it are copied as bytes)
};
static_assert(sizeof(ThreadKernelState) == 80);

struct Thread {
  int32_t vtid;
  uint32_t flags;         // kThreadMain for the thread that continues as the restorer
  int32_t oldTid;         // its kernel TID at the checkpoint (held robust mutexes name it);
                          // 0 when the image did not record it
  uint32_t reserved;
  uint64_t sigframe;      // blob offset of the saved rt_sigframe (registers, FPU/XSAVE, mask)
  uint64_t sigframeLen;
  uint64_t sigframeAddr;  // address of the frame's struct ucontext (the stack pointer for
                          // rt_sigreturn); the frame is copied there first if sigframeLen > 0
  ThreadKernelState kernel;
  uint64_t pendingMask;   // bit (n-1): signal n pending for this thread, re-raised before resuming
                          // (without siginfo: those with one are PendingSignal entries)
  char name[16];          // the thread's name, NUL-terminated ("": keep the process's)
};
static_assert(sizeof(Thread) == 144);

inline constexpr uint32_t kThreadMain = 1;

// One queued instance of a pending signal with the siginfo it carries, queued again
// by the restorer (in plan order) on its thread, or on the process.
struct PendingSignal {
  int32_t thread;     // index into the threads, or kProcessWide
  uint32_t reserved;
  uint8_t info[128];  // siginfo_t; si_signo is the signal
};
static_assert(sizeof(PendingSignal) == 136);
inline constexpr int32_t kProcessWide = -1;

// One timer_create timer, recreated by the restorer with the same id (so the timer_t
// values in the restored memory stay valid) and armed before any thread runs.
struct PosixTimer {
  int32_t id;
  int32_t clock;       // as the kernel holds it
  int32_t notify;      // sigev_notify (SIGEV_THREAD_ID: at `thread`)
  int32_t signo;
  uint64_t value;      // sigev_value
  int32_t thread;      // index into the threads (notify has SIGEV_THREAD_ID), else -1
  uint32_t reserved;
  int64_t valueNs;     // time left at the freeze, 0 = disarmed; ignored when absoluteNs != 0
  int64_t intervalNs;
  int64_t absoluteNs;  // != 0: arm with TIMER_ABSTIME for this CLOCK_REALTIME date
};
static_assert(sizeof(PosixTimer) == 56);
inline constexpr int32_t kSigevThreadId = 4;  // SIGEV_THREAD_ID

// Mirrors struct prctl_mm_map; zero when the image did not record it.
struct MmLayout {
  uint64_t startCode, endCode, startData, endData;
  uint64_t startBrk, brk, startStack;
  uint64_t argStart, argEnd, envStart, envEnd;
  uint64_t auxv;     // blob offset of the saved auxiliary vector
  uint64_t auxvLen;  // bytes
};

inline constexpr uint32_t kPlanHasMmLayout = 1;

// A kernel sigaction as rt_sigaction(2) takes it (struct kernel_sigaction).
struct SigAction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};
static_assert(sizeof(SigAction) == 32);

// An fd that must exist when the process resumes; it is already open (migctl set it up
// before exec'ing the restorer), the restorer only sets its close-on-exec flag.
struct Fd {
  int32_t fd;
  uint32_t flags;  // kFdCloexec
};
inline constexpr uint32_t kFdCloexec = 1;

// Written by the restorer at Header::resumeInfoAddr inside the restored memory: how the
// shim learns it has been restored, and what changed.
struct ResumeInfo {
  uint64_t magic;        // kResumeMagic once restored; the shim clears it before a checkpoint
  int32_t realPid;       // the new kernel PID of the process
  int32_t configFd;      // Header::configFd: the forwarding Config memfd, or -1 (not migrated)
  int64_t monotonicNs;   // CLOCK_MONOTONIC when the restorer ran
  // The restorer's code and data, left mapped (its last instructions run there): the
  // shim unmaps them at its next checkpoint, once every thread is parked in the shim,
  // so that no image carries a copy of them (one more per restore).
  uint64_t restorerStart;
  uint64_t restorerEnd;
};
inline constexpr uint64_t kResumeMagic = 0x44454d5553455247ull;  // "GRESUMED"

struct Header {
  uint64_t magic;
  uint32_t version;
  uint32_t headerSize;  // sizeof(Header) of the writer
  uint64_t totalSize;   // bytes of the whole plan
  uint32_t flags;       // kPlan*
  uint32_t imagePath;   // string offset of the image file the Pages come from
  uint32_t regionCount;
  uint32_t pagesCount;
  uint32_t threadCount;
  uint32_t reserved;
  uint64_t regions;     // byte offsets from the start of the plan
  uint64_t pages;
  uint64_t threads;
  uint64_t strings;
  uint64_t stringsSize;
  uint64_t blob;
  uint64_t blobSize;
  MmLayout mm;
  uint32_t sigactionCount;  // entry i is signal i+1; at most 64
  uint32_t fdCount;
  uint64_t sigactions;      // byte offsets from the start of the plan
  uint64_t fds;
  int64_t itimerValueNs;    // ITIMER_REAL left at the freeze; 0 = disarmed
  int64_t itimerIntervalNs;
  uint64_t resumeInfoAddr;  // 0: none
  uint64_t processPending;  // bit (n-1): signal n pending for the process (without
                            // siginfo: those with one are PendingSignal entries)
  uint32_t pendingCount;
  uint32_t reserved2;
  uint64_t pendingSignals;  // byte offset from the start of the plan
  uint64_t resumeEntry;     // 0: threads resume with rt_sigreturn at sigframeAddr. Else the
                            // address of the shim's `void mig_resumed_thread(uint64_t
                            // ucontextAddr)`, which each thread calls instead, on its own
                            // stack below its frame, and which ends in that rt_sigreturn
  int32_t configFd;         // an open fd handed to the shim in ResumeInfo::configFd; -1 (or
                            // 0, as in a zero-initialised header) = none
  uint32_t reserved3;
  uint32_t timerCount;
  int32_t lazySocket;       // > 0: a unix socket to the page server; the restorer registers every
                            // region holding kPagesLazy pages with a new userfaultfd (MISSING mode)
                            // and sends that fd there. 0 = no lazy pages
  uint64_t timers;          // byte offset from the start of the plan
};
static_assert(sizeof(Header) == 312);

inline const Region* regions(const Header* h) {
  return reinterpret_cast<const Region*>(reinterpret_cast<const char*>(h) + h->regions);
}
inline const Pages* pages(const Header* h) {
  return reinterpret_cast<const Pages*>(reinterpret_cast<const char*>(h) + h->pages);
}
inline const Thread* threads(const Header* h) {
  return reinterpret_cast<const Thread*>(reinterpret_cast<const char*>(h) + h->threads);
}
inline const SigAction* sigactions(const Header* h) {
  return reinterpret_cast<const SigAction*>(reinterpret_cast<const char*>(h) + h->sigactions);
}
inline const Fd* fds(const Header* h) {
  return reinterpret_cast<const Fd*>(reinterpret_cast<const char*>(h) + h->fds);
}
inline const PendingSignal* pendingSignals(const Header* h) {
  return reinterpret_cast<const PendingSignal*>(reinterpret_cast<const char*>(h) + h->pendingSignals);
}
inline const PosixTimer* posixTimers(const Header* h) {
  return reinterpret_cast<const PosixTimer*>(reinterpret_cast<const char*>(h) + h->timers);
}
inline const char* string(const Header* h, uint32_t offset) {
  return reinterpret_cast<const char*>(h) + h->strings + offset;
}
inline const void* blob(const Header* h, uint64_t offset) {
  return reinterpret_cast<const char*>(h) + h->blob + offset;
}

}  // namespace mig::plan
