// mig-restore: the freestanding restorer. Exec'd as
// `mig-restore PLAN_FD IMAGE_FD [LOG_FD [COME_BACK_FD CARRIED_FD]]` with the
// application's fds, cwd, umask and rlimits already in place, it turns
// itself into the restored process by executing a restore plan (image/restore_plan.h):
//
//   1. moves its own code, the plan and the kernel's vDSO out of the way of the plan's
//      regions (and of the room a restored stack or heap needs to grow), and continues
//      on a private stack in a gap no region uses; unmaps the kernel's initial stack;
//   2-3. maps every region and puts the saved pages in place;
//   4. moves the new kernel's [vvar]/[vvar_vclock]/[vdso] onto the old addresses;
//   5. restores the mm layout (PR_SET_MM_MAP);
//   6. installs sigactions and the ITIMER_REAL timer;
//   7. sets close-on-exec flags, closes the plan and image fds;
//   8. writes ResumeInfo for the shim;
//   9. recreates the threads, then the POSIX timers with their ids (a SIGEV_THREAD_ID
//      timer names its thread's new TID), each of which re-registers its kernel-side state (robust
//      list, rseq, sigaltstack) and returns into its saved signal frame with
//      rt_sigreturn. The main thread moves the futex words of the robust mutexes each
//      thread holds to its new TID and queues each thread's pending signals; what another
//      thread's set-up could refuse it tries on itself first. So nothing that can fail is
//      left once any thread returns (a failure never leaves part of the application
//      running), and the main thread returns without waiting for the others to be
//      scheduled; they return once it has given the go. When the plan has
//      a resumeEntry, each thread calls that shim function (on its own stack, below its
//      frame) instead, and the shim does the rt_sigreturn (see shim/forward/resume.cc).
//
// Beyond the letter of the plan (see the comments at each): page runs under 64 KiB are
// copied even when the plan says map, and stacks always get their pages copied; an
// rseq length under 32 is registered as 32; views of one shared object are marked by
// Region::reserved (share group) and restored as one memfd; Thread::reserved, when
// set, is the thread's kernel TID at the checkpoint; the process gets argv[0]'s name.
//
// Built freestanding (no libc, no allocation, no exceptions), static-PIE without
// runtime relocations, so that it runs from wherever it is copied to. Any failure
// prints one line "mig-restore: <what failed>[: errno N]" on LOG_FD (fd 2 without
// it) and exits 127; it never continues half-restored. With COME_BACK_FD (a hop back
// home, deputy/homecoming.h) a failure instead execs the deputy again in this process
// (`mig-deputy --again-from COME_BACK_FD --carried-fd CARRIED_FD`, see comeBack below):
// until every thread is set up, nothing it did outlives an exec that the deputy would
// see. The come-back table and the ticket's listener it names are closed at the last
// moment, just before the threads return into the job. With GO_FD (the job's children
// born away, forked by `migctl restart --homecoming`, each waiting for a byte there)
// that same moment is theirs: GO_COUNT bytes 'G' are sent and GO_FD closed, so a
// child runs only once the job can no longer come back; a come-back first kills its
// CHILD_PIDs (every descendant born away), closes GO_FD and reaps the job's children
// among them, so that nothing of them stays at home (migctl/tree_restart.h). LOG_FD (the restart's own
// messages fd, migctl restart puts it above the job's fds) also takes the
// MIG_RESTORE_DEBUG lines, and is closed before the job runs again.
//
// The restorer's code and data stay mapped in the restored process (the last
// instruction a thread executes here is the rt_sigreturn syscall, which cannot unmap
// the page it is on): an anonymous copy of them (about 60 KiB resident), in a gap no
// plan region and no stack or heap growth room uses, until the shim's next checkpoint
// unmaps them (ResumeInfo names them). Its stacks are unmapped: the main
// thread's own as it leaves, the other threads' temporary ones by the last of them to
// leave (the main thread does not wait for that).
#pragma GCC visibility push(hidden)

#include "image/plan_check.h"
#include "image/restore_plan.h"
#include "restore/arch/x86_64/syscall.h"
#include "restore/fmt.h"
#include "restore/layout.h"
#include "restore/linux_abi.h"
#include "shim/forward/forward_config.h"

extern "C" const char __ehdr_start[];

namespace mig::restore {
namespace {

using namespace abi;

constexpr uint32_t kMaxMaps = 512;
constexpr uint64_t kPopulateMinBytes = 256 * 1024;
constexpr uint32_t kMaxRegions = 1u << 18;

struct ThreadCtl {
  uint64_t sigframeAddr;
  plan::ThreadKernelState kernel;
  uint64_t pendingMask;
  int32_t vtid;
  int32_t oldTid;  // the kernel TID the thread had at the checkpoint
  char name[16];   // "" in images from before names were saved
  int32_t newTid;  // its kernel TID now (set in startThreads)
};

struct State {
  int planFd;
  int imageFd;
  int logFd;  // where its lines go (failures, MIG_RESTORE_DEBUG): LOG_FD, else 2
  bool debug;
  int64_t startNs;
  const plan::Header* plan;
  uint64_t planSize;
  Range planMap;
  Range image;      // the restorer's own image, where it runs now
  Range oldStack;   // the stack the kernel gave us
  VdsoUnit vdso;    // the current kernel's vDSO unit, where it is now
  VdsoUnit target;  // where the image's process had it
  SelfLayout layout;
  uint32_t mapCount;
  MapEntry maps[kMaxMaps];
  char text[64 * 1024];  // /proc/self/maps
  uint64_t needWrite[kMaxRegions / 64];  // regions that get pages by copying
  uint64_t grouped[kMaxRegions / 64];    // regions already mapped as a view of a share group
  uint64_t lazy[kMaxRegions / 64];       // regions whose pages the page server fills
  ThreadCtl threads[kMaxThreads];
  uint32_t threadCount;
  uint32_t mainIndex;
  int32_t pid;   // the new kernel PID
  int32_t vpid;  // the PID the process knows: its main thread's virtual TID
  uint32_t uid;
  // Futex words for starting the threads.
  uint32_t go;     // 1: all checked and set up but theirs, return into the saved contexts
  uint64_t resumeEntry;  // the plan's, read before the plan is unmapped
  uint32_t onTempStacks;  // children not yet off their temporary stacks (the last unmaps them)
  // Statistics for MIG_RESTORE_DEBUG.
  uint64_t copiedRuns, copiedBytes;
  bool planChecked;  // the plan's fds (config, lazy socket) may be believed
  bool lazyHandedOver;
  // A hop back home: what makes the deputy again if the restore fails (comeBack).
  int comeBackFd;  // > 2: the deputy's come-back table (deputy/homecoming.h)
  int carriedFd;
  int linkFd;      // the ticket's listener the table names, or -1
  char deputy[4096];
  uint64_t oldMask;  // the signal mask it was exec'd with
  plan::SigAction oldActions[64];
  bool actionsSaved;
  char envText[32 * 1024];  // its environment but MIG_FAULT, for the deputy: strings at
  uint32_t envAt[255];      // these offsets (the restorer may have moved since: no pointers)
  uint32_t envCount;
  const char* envp[256];    // made from them by comeBack
  int fault;  // MIG_FAULT=hop:home-restorer:ACTION: 1 error, 2 crash
  int gateFd;      // > 2: a tree's hop home: where its go comes (MIG_HOME_GATE_FD, treeGo)
  int goFd;        // > 2: the socket the job's children born away go on (GO_FD)
  uint32_t goCount;
  int32_t children[kMaxChildrenReleased];
  uint32_t childCount;
};

State g;

// ---- failure and messages ------------------------------------------------------------

void writeAll(int fd, const char* p, uint64_t n) {
  while (n > 0) {
    long w = sys::rawSyscall(sys::kWrite, fd, reinterpret_cast<long>(p), static_cast<long>(n));
    if (w == -kEINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<uint64_t>(w);
  }
}

[[noreturn]] void comeBack();

[[noreturn]] void die(Line& line) {
  line.str("\n");
  writeAll(g.logFd, line.data(), line.size());
  if (g.comeBackFd > 2) comeBack();
  for (;;) sys::rawSyscall(sys::kExitGroup, 127);
}

// "mig-restore: <what>: errno N" (negative kernel return value `err`).
[[noreturn]] void failErr(Line& what, long err) {
  Line line;
  line.str("mig-restore: ").str(what.data()).str(": errno ").dec(-err);
  die(line);
}

[[noreturn]] void failErr(const char* what, long err) {
  Line w;
  w.str(what);
  failErr(w, err);
}

[[noreturn]] void fail(const char* what, const char* detail = nullptr) {
  Line line;
  line.str("mig-restore: ").str(what);
  if (detail != nullptr) line.str(": ").str(detail);
  die(line);
}

int64_t monotonicNs() {
  Timespec ts{};
  sys::rawSyscall(sys::kClockGettime, kClockMonotonic, reinterpret_cast<long>(&ts));
  return ts.sec * 1000000000 + ts.nsec;
}

void debugLine(Line& line) {
  if (!g.debug) return;
  Line out;
  out.str("mig-restore: [").udec(static_cast<uint64_t>(monotonicNs() - g.startNs) / 1000).str(" us] ");
  out.str(line.data()).str("\n");
  writeAll(g.logFd, out.data(), out.size());
}

void debug(const char* what) {
  if (!g.debug) return;
  Line l;
  l.str(what);
  debugLine(l);
}

// ---- small system call wrappers -----------------------------------------------------

long mmap(uint64_t addr, uint64_t len, int prot, int flags, int fd, uint64_t off) {
  return sys::rawSyscall(sys::kMmap, static_cast<long>(addr), static_cast<long>(len), prot, flags, fd,
                         static_cast<long>(off));
}

long mremap(uint64_t from, uint64_t len, uint64_t to) {
  return sys::rawSyscall(sys::kMremap, static_cast<long>(from), static_cast<long>(len), static_cast<long>(len),
                         kMremapMaymove | kMremapFixed, static_cast<long>(to));
}

long munmap(uint64_t addr, uint64_t len) {
  return sys::rawSyscall(sys::kMunmap, static_cast<long>(addr), static_cast<long>(len));
}

long openRead(const char* path, int flags) {
  return sys::rawSyscall(sys::kOpenat, kAtFdcwd, reinterpret_cast<long>(path), flags | kOCloexec, 0);
}

void closeFd(long fd) {
  if (fd >= 0) sys::rawSyscall(sys::kClose, fd);
}

// ---- a hop home that fails: the deputy again ------------------------------------------

// Reads the come-back table's first two lines, "deputy PROGRAM" and "link FD ...": its
// program and its listener. Without them (unreadable) a failure ends the job as before.
void readComeBack(int fd, int carried) {
  char t[4200];
  long n = sys::rawSyscall(sys::kPread64, fd, reinterpret_cast<long>(t), sizeof(t) - 1, 0);
  if (n <= 7) return;
  t[n] = '\0';
  const char* key = "deputy ";
  int i = 0;
  for (; key[i] != '\0'; ++i) {
    if (t[i] != key[i]) return;
  }
  int k = 0;
  while (t[i] != '\n' && t[i] != '\0' && k < static_cast<int>(sizeof(g.deputy)) - 1) g.deputy[k++] = t[i++];
  g.deputy[k] = '\0';
  if (t[i] != '\n' || k == 0) return;
  const char* link = "\nlink ";
  for (int j = 0; link[j] != '\0'; ++j) {
    if (t[i + j] != link[j]) return;
  }
  i += 6;
  int64_t v = 0;
  const bool negative = t[i] == '-';
  if (negative) ++i;
  while (t[i] >= '0' && t[i] <= '9' && v < 0x7fffffff) v = v * 10 + (t[i++] - '0');
  g.linkFd = negative ? -1 : static_cast<int>(v);
  g.comeBackFd = fd;
  g.carriedFd = carried;
}

// Its environment for the deputy, without MIG_FAULT (no fault in the deputy again) and
// MIG_HOME_GATE_FD; also reads both for this restore. What does not fit (32 KiB) is left out.
void keepEnvironment(char** envp) {
  uint64_t used = 0;
  uint32_t count = 0;
  for (char** e = envp; *e != nullptr; ++e) {
    const char* s = *e;
    const char* fault = "MIG_FAULT=";
    int i = 0;
    while (fault[i] != '\0' && s[i] == fault[i]) ++i;
    if (fault[i] == '\0') {
      const char* mine = "hop:home-restorer:";
      int j = 0;
      while (mine[j] != '\0' && s[i + j] == mine[j]) ++j;
      if (mine[j] == '\0') g.fault = s[i + j] == 'c' ? 2 : 1;
      continue;
    }
    // A tree's hop home: the socket where this member waits for its tree's go (treeGo).
    const char* gate = "MIG_HOME_GATE_FD=";
    i = 0;
    while (gate[i] != '\0' && s[i] == gate[i]) ++i;
    if (gate[i] == '\0') {
      g.gateFd = parseFdArg(s + i);
      continue;
    }
    uint64_t len = 0;
    while (s[len] != '\0') ++len;
    if (count >= sizeof(g.envAt) / sizeof(g.envAt[0]) || used + len + 1 > sizeof(g.envText)) continue;
    __builtin_memcpy(g.envText + used, s, len + 1);
    g.envAt[count++] = static_cast<uint32_t>(used);
    used += len + 1;
  }
  g.envCount = count;
}

// A tree's hop home (shadow/home_gate.h): this member is at its last step that can
// fail; it says so ('R') and waits for its tree: 'G' once every member got here (the
// tree's point of no return), anything else (the connection closed: a member failed,
// home's limit, home's shadowd gone) calls it off, and the deputy comes back.
void treeGo() {
  if (g.gateFd <= 2) return;
  const char ready = 'R';
  long w;
  do {
    w = sys::rawSyscall(sys::kSendto, g.gateFd, reinterpret_cast<long>(&ready), 1, kMsgNosignal, 0, 0);
  } while (w == -kEINTR);
  char go = 0;
  long r = 0;
  if (w == 1) {
    do {
      r = sys::rawSyscall(sys::kRead, g.gateFd, reinterpret_cast<long>(&go), 1);
    } while (r == -kEINTR);
  }
  if (r != 1 || go != 'G') fail("called off: another member of the tree could not be restored at home");
  closeFd(g.gateFd);
  g.gateFd = -1;
}

// The point of no return: the children born away go ('G' each), as the job will run.
void releaseChildren() {
  if (g.goFd <= 2) return;
  char go[64];
  for (uint32_t i = 0; i < sizeof(go); ++i) go[i] = 'G';
  for (uint32_t left = g.goCount; left > 0;) {
    const uint32_t n = left < sizeof(go) ? left : sizeof(go);
    // MSG_NOSIGNAL: a child gone meanwhile must not leave the job a SIGPIPE.
    long w = sys::rawSyscall(sys::kSendto, g.goFd, reinterpret_cast<long>(go), n, kMsgNosignal, 0, 0);
    if (w == -kEINTR) continue;
    if (w <= 0) {
      Line line;
      line.str("mig-restore: a child born away ended before it was released: errno ").dec(-w).str("\n");
      writeAll(g.logFd, line.data(), line.size());
      break;
    }
    left -= static_cast<uint32_t>(w);
  }
  closeFd(g.goFd);
  g.goFd = -1;
}

// A come-back: the descendants born away never run. Killed while each waits for its go
// (having run nothing of its own yet; the go closed first, a child would say "called
// off" in the hop's log, whose last line the user is told), and the job's children
// among them reaped (a grandchild: ECHILD at once), so that no zombie of them stays the
// deputy's. The SIGCHLDs this makes (blocked here, so kept pending across the exec) are
// taken back.
void endChildren() {
  if (g.goFd <= 2) return;
  uint64_t pendingBefore = 0;
  sys::rawSyscall(sys::kRtSigpending, reinterpret_cast<long>(&pendingBefore), 8);
  for (uint32_t i = 0; i < g.childCount; ++i) sys::rawSyscall(sys::kKill, g.children[i], kSigKill);
  closeFd(g.goFd);
  g.goFd = -1;
  for (uint32_t i = 0; i < g.childCount; ++i) {
    while (sys::rawSyscall(sys::kWait4, g.children[i], 0, kWall, 0) == -kEINTR) {}
  }
  const uint64_t chld = 1ull << (kSigChld - 1);
  if ((pendingBefore & chld) == 0) {
    Timespec none{};
    sys::rawSyscall(sys::kRtSigtimedwait, reinterpret_cast<long>(&chld), 0, reinterpret_cast<long>(&none), 8);
  }
}

// After a failure (said on LOG_FD): the deputy again, in this process, as `migctl
// restart --homecoming` does for a failure before the restorer. What the restore did
// that an exec would not undo is undone first: the job's pending signals it queued
// (set to SIG_IGN, which discards them, or the deputy would pass them on to the job
// away, which has them too), the job's signal actions (the deputy's back) and the mask;
// the fds it was given (plan, image, forwarding config, page server socket, log) are
// closed. Its memory, threads, timers, vDSO and mm layout go with the exec itself; the
// deputy resets ITIMER_REAL and its signals at start. If the exec fails, the job is
// lost (exit 127), as before.
[[noreturn]] void comeBack() {
  endChildren();
  const plan::Header* h = g.planChecked ? g.plan : nullptr;
  uint64_t queued = 0;
  if (h != nullptr) {
    queued = h->processPending;
    for (uint32_t i = 0; i < h->threadCount; ++i) queued |= plan::threads(h)[i].pendingMask;
    for (uint32_t i = 0; i < h->pendingCount; ++i) {
      int32_t signo = 0;
      __builtin_memcpy(&signo, plan::pendingSignals(h)[i].info, sizeof(signo));
      if (signo >= 1 && signo <= 64) queued |= 1ull << (signo - 1);
    }
  }
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == kSigKill || sig == kSigStop) continue;
    if ((queued >> (sig - 1)) & 1) {
      plan::SigAction ignore{};
      ignore.handler = 1;  // SIG_IGN
      sys::rawSyscall(sys::kRtSigaction, sig, reinterpret_cast<long>(&ignore), 0, 8);
    }
    if (g.actionsSaved) sys::rawSyscall(sys::kRtSigaction, sig, reinterpret_cast<long>(&g.oldActions[sig - 1]), 0, 8);
  }
  closeFd(g.planFd);
  closeFd(g.imageFd);
  if (g.gateFd > 2) closeFd(g.gateFd);  // its tree hears of the failure at once
  if (h != nullptr && h->configFd > 2) closeFd(h->configFd);
  if (h != nullptr && h->lazySocket > 2 && !g.lazyHandedOver) closeFd(h->lazySocket);
  if (g.logFd != 2) sys::rawSyscall(sys::kFcntl, g.logFd, kFSetfd, kFdCloexec);
  sys::rawSyscall(sys::kRtSigprocmask, kSigSetmask, reinterpret_cast<long>(&g.oldMask), 0, 8);
  for (uint32_t i = 0; i < g.envCount; ++i) g.envp[i] = g.envText + g.envAt[i];
  g.envp[g.envCount] = nullptr;
  Line from, carried;
  from.dec(g.comeBackFd);
  carried.dec(g.carriedFd);
  // The deputy's path through a register: as a constant the compiler may put &g.deputy
  // into a table that needs a load-time relocation, which this static-PIE never gets
  // (the exec then failed with EFAULT).
  const char* deputy = g.deputy;
  asm("" : "+r"(deputy));
  const char* argv[] = {deputy, "--again-from", from.data(), g.carriedFd >= 0 ? "--carried-fd" : nullptr,
                        carried.data(), nullptr};
  long r = sys::rawSyscall(sys::kExecve, reinterpret_cast<long>(deputy), reinterpret_cast<long>(argv),
                           reinterpret_cast<long>(g.envp));
  Line line;
  line.str("mig-restore: cannot run ").str(g.deputy).str(" again: errno ").dec(-r).str("\n");
  writeAll(g.logFd, line.data(), line.size());
  for (;;) sys::rawSyscall(sys::kExitGroup, 127);
}

void futexWaitWhile(uint32_t* word, uint32_t value) {
  sys::rawSyscall(sys::kFutex, reinterpret_cast<long>(word), kFutexWait | kFutexPrivate, value, 0, 0, 0);
}

void futexWakeAll(uint32_t* word) {
  sys::rawSyscall(sys::kFutex, reinterpret_cast<long>(word), kFutexWake | kFutexPrivate, 0x7fffffff, 0, 0, 0);
}

// Waits until *word == want (it only grows).
void waitFor(uint32_t* word, uint32_t want) {
  for (;;) {
    uint32_t v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    if (v == want) return;
    futexWaitWhile(word, v);
  }
}

// Reads a whole small file into buf (NUL-terminated); returns its length or a negative errno.
long readSmallFile(const char* path, char* buf, uint64_t cap) {
  long fd = openRead(path, kOReadOnly);
  if (fd < 0) return fd;
  uint64_t len = 0;
  for (;;) {
    if (len + 1 >= cap) {
      closeFd(fd);
      return -1000;  // too big
    }
    long n = sys::rawSyscall(sys::kRead, fd, reinterpret_cast<long>(buf + len), static_cast<long>(cap - 1 - len));
    if (n == -kEINTR) continue;
    if (n < 0) {
      closeFd(fd);
      return n;
    }
    if (n == 0) break;
    len += static_cast<uint64_t>(n);
  }
  closeFd(fd);
  buf[len] = '\0';
  return static_cast<long>(len);
}

uint64_t readRlimitCur(int resource) {
  Rlimit rl{};
  if (sys::rawSyscall(sys::kPrlimit64, 0, resource, 0, reinterpret_cast<long>(&rl)) < 0) return kRlimInfinity;
  return rl.cur;
}

bool testBit(const uint64_t* bits, uint32_t i) { return (bits[i / 64] >> (i % 64)) & 1; }
void setBit(uint64_t* bits, uint32_t i) { bits[i / 64] |= 1ull << (i % 64); }

// ---- step 1: out of the way -----------------------------------------------------------

void readMaps() {
  long n = readSmallFile("/proc/self/maps", g.text, sizeof(g.text));
  if (n == -1000) fail("reading /proc/self/maps", "more than 64 KiB");
  if (n < 0) failErr("reading /proc/self/maps", n);
  int64_t count = parseMaps(g.text, static_cast<uint64_t>(n), g.maps, kMaxMaps);
  if (count == -2) fail("reading /proc/self/maps", "too many mappings");
  if (count < 0) fail("reading /proc/self/maps", "malformed line");
  g.mapCount = static_cast<uint32_t>(count);
}

// The restorer's own image: every PT_LOAD segment, found through its ELF header.
Range ownImage() {
  const auto* eh = reinterpret_cast<const ElfHeader*>(__ehdr_start);
  const uint64_t base = reinterpret_cast<uint64_t>(__ehdr_start);
  const auto* ph = reinterpret_cast<const ElfPhdr*>(__ehdr_start + eh->phoff);
  Range r{~0ull, 0};
  bool headerLoaded = false;
  for (uint16_t i = 0; i < eh->phnum; ++i) {
    if (ph[i].type == kPtTls) fail("the restorer has a TLS segment (it must not use thread_local)");
    if (ph[i].type != kPtLoad) continue;
    if (ph[i].offset == 0 && ph[i].vaddr == 0) headerLoaded = true;
    uint64_t s = pageDown(base + ph[i].vaddr), e = pageUp(base + ph[i].vaddr + ph[i].memsz);
    if (s < r.start) r.start = s;
    if (e > r.end) r.end = e;
  }
  if (!headerLoaded || r.empty()) fail("the restorer's ELF image has an unexpected layout");
  return r;
}

bool zeroPage(uint64_t addr) {
  const auto* p = reinterpret_cast<const uint64_t*>(addr);
  for (uint64_t i = 0; i < kPage / 8; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// Copies the restorer's image to `to` (fresh anonymous memory) and gives each segment
// its protection back. Pages of .bss still all zero are not copied: they stay
// untouched zero-fill pages in the copy too.
void copyImage(uint64_t to) {
  long m = mmap(to, g.image.size(), kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixedNoreplace, -1, 0);
  if (m < 0) failErr("mapping room to move the restorer to", m);
  if (static_cast<uint64_t>(m) != to) failErr("mapping room to move the restorer to (moved)", -kEINVAL);
  const auto* eh = reinterpret_cast<const ElfHeader*>(__ehdr_start);
  const uint64_t base = reinterpret_cast<uint64_t>(__ehdr_start);
  const auto* ph = reinterpret_cast<const ElfPhdr*>(__ehdr_start + eh->phoff);
  for (uint16_t i = 0; i < eh->phnum; ++i) {
    if (ph[i].type != kPtLoad) continue;
    uint64_t s = pageDown(base + ph[i].vaddr), e = pageUp(base + ph[i].vaddr + ph[i].memsz);
    const uint64_t fileEnd = pageUp(base + ph[i].vaddr + ph[i].filesz);
    for (uint64_t page = s; page < e; page += kPage) {
      if (page >= fileEnd && zeroPage(page)) continue;
      __builtin_memcpy(reinterpret_cast<void*>(to + (page - g.image.start)), reinterpret_cast<const void*>(page), kPage);
    }
  }
  for (uint16_t i = 0; i < eh->phnum; ++i) {
    if (ph[i].type != kPtLoad) continue;
    uint64_t s = pageDown(base + ph[i].vaddr), e = pageUp(base + ph[i].vaddr + ph[i].memsz);
    int prot = ((ph[i].flags & kPfR) ? kProtRead : 0) | ((ph[i].flags & kPfW) ? kProtWrite : 0) |
               ((ph[i].flags & kPfX) ? kProtExec : 0);
    long r = sys::rawSyscall(sys::kMprotect, static_cast<long>(to + (s - g.image.start)), static_cast<long>(e - s),
                             prot);
    if (r < 0) failErr("protecting the moved restorer", r);
  }
}

void movePiece(Range& p, const char* name, uint64_t from, uint64_t newSpanStart, const char* why) {
  if (p.empty()) return;
  uint64_t to = newSpanStart + (p.start - from);
  long r = mremap(p.start, p.size(), to);
  if (r < 0) {
    Line w;
    w.str(why).str(": mremap ").str(name).str(" ").range(p.start, p.end).str(" to ").hex(to);
    failErr(w, r);
  }
  p = Range{to, to + p.size()};
}

// Moves every piece of the current vDSO unit by the same distance (the vDSO code finds
// its data pages at fixed offsets). Each piece is its own VMA and must move whole.
void moveVdsoUnit(uint64_t newSpanStart, const char* why) {
  const uint64_t from = g.vdso.span().start;
  movePiece(g.vdso.vvar, "[vvar]", from, newSpanStart, why);
  movePiece(g.vdso.vvarVclock, "[vvar_vclock]", from, newSpanStart, why);
  movePiece(g.vdso.vdso, "[vdso]", from, newSpanStart, why);
}

[[noreturn]] void phaseB(void*);

// Runs on the kernel's stack, in the restorer as loaded: decides and makes the moves,
// then continues in phaseB on the private stack (in the moved copy, if it moved).
[[noreturn]] void phaseA(uint64_t* sp) {
  const uint64_t argc = sp[0];
  char** argv = reinterpret_cast<char**>(sp + 1);
  char** envp = argv + argc + 1;
  char** e = envp;
  // Its lines go to LOG_FD, the restart's own messages fd (a hop's spool log, or the
  // stderr of the migctl restart a user ran), never to the job's fd 2.
  g.logFd = argc == 4 || argc == 6 || argc >= 8 ? parseFdArg(argv[3]) : 2;
  if (g.logFd < 0) g.logFd = 2;
  if (argc >= 6 && parseFdArg(argv[4]) > 2) {
    keepEnvironment(envp);
    readComeBack(parseFdArg(argv[4]), parseFdArg(argv[5]));
  }
  if (argc >= 8 && argc - 8 <= kMaxChildrenReleased) {
    g.goFd = parseFdArg(argv[6]);
    const int count = parseFdArg(argv[7]);
    g.goCount = count > 0 ? static_cast<uint32_t>(count) : 0;
    for (uint64_t i = 8; i < argc; ++i) {
      const int pid = parseFdArg(argv[i]);
      if (pid > 0) g.children[g.childCount++] = pid;
    }
  }
  for (; *e != nullptr; ++e) {
    const char* s = *e;
    const char* key = "MIG_RESTORE_DEBUG=";
    int i = 0;
    while (key[i] != '\0' && s[i] == key[i]) ++i;
    if (key[i] == '\0' && s[i] != '\0' && s[i] != '0') g.debug = true;
  }
  if (g.debug) {
    // The wall clock at the start, so that a benchmark can time from here to the job's
    // first instruction (DESIGN's "restart of a small process" figure).
    Timespec now{};
    sys::rawSyscall(sys::kClockGettime, kClockRealtime, reinterpret_cast<long>(&now));
    Line l;
    l.str("started at realtime ").udec(static_cast<uint64_t>(now.sec) * 1000000 + static_cast<uint64_t>(now.nsec) / 1000).str(" us");
    debugLine(l);
  }
  uint64_t sysinfoEhdr = 0;
  for (const uint64_t* av = reinterpret_cast<const uint64_t*>(e + 1); av[0] != kAtNull; av += 2) {
    if (av[0] == kAtSysinfoEhdr) sysinfoEhdr = av[1];
  }

  if (argc != 3 && argc != 4 && argc != 6 && (argc < 8 || argc - 8 > kMaxChildrenReleased)) {
    fail("usage: mig-restore PLAN_FD IMAGE_FD [LOG_FD [COME_BACK_FD CARRIED_FD [GO_FD GO_COUNT CHILD_PID...]]]");
  }
  g.planFd = parseFdArg(argv[1]);
  g.imageFd = parseFdArg(argv[2]);
  if (g.planFd < 0) fail("PLAN_FD is not a decimal fd number", argv[1]);
  if (g.imageFd < 0) fail("IMAGE_FD is not a decimal fd number", argv[2]);

  // The plan.
  Stat st{};
  long r = sys::rawSyscall(sys::kFstat, g.planFd, reinterpret_cast<long>(&st));
  if (r < 0) {
    Line w;
    w.str("plan fd ").dec(g.planFd);
    failErr(w, r);
  }
  if (st.size <= 0) fail("plan is empty");
  g.planSize = static_cast<uint64_t>(st.size);
  long m = mmap(0, pageUp(g.planSize), kProtRead, kMapPrivate, g.planFd, 0);
  if (m < 0) {
    Line w;
    w.str("mapping the plan from fd ").dec(g.planFd);
    failErr(w, m);
  }
  g.planMap = Range{static_cast<uint64_t>(m), static_cast<uint64_t>(m) + pageUp(g.planSize)};
  g.plan = reinterpret_cast<const plan::Header*>(m);
  if (const char* problem = plan::validate(g.plan, g.planSize)) fail("invalid plan", problem);

  // The image.
  r = sys::rawSyscall(sys::kFstat, g.imageFd, reinterpret_cast<long>(&st));
  if (r < 0) {
    Line w;
    w.str("image fd ").dec(g.imageFd);
    failErr(w, r);
  }
  if ((st.mode & kSIfmt) != kSIfreg) fail("image fd is not a regular file");
  r = sys::rawSyscall(sys::kFcntl, g.imageFd, kFGetfl, 0);
  if (r < 0) failErr("image fd flags", r);
  if ((r & kOAccMode) == kOWriteOnly) fail("image fd is not open for reading");

  int64_t bad = -1;
  if (const char* problem = checkPlanForRestore(g.plan, g.planFd, g.imageFd, g.logFd, &bad)) {
    Line w;
    w.str("plan not restorable: ").str(problem);
    if (bad >= 0) w.str(" (entry ").dec(bad).str(")");
    fail(w.data());
  }
  if (g.plan->regionCount > kMaxRegions) fail("plan has more regions than the restorer handles");
  g.planChecked = true;

  // What is mapped now, and where the vDSO must go.
  readMaps();
  g.vdso = vdsoFromMaps(g.maps, g.mapCount);
  if (sysinfoEhdr != 0 && g.vdso.vdso.start != sysinfoEhdr) {
    fail("AT_SYSINFO_EHDR does not match [vdso] in /proc/self/maps");
  }
  if (const char* problem = vdsoFromPlan(g.plan, &g.target)) fail("invalid plan", problem);
  if (const char* problem = matchVdso(g.vdso, g.target)) fail("cannot move the vDSO", problem);
  g.image = ownImage();
  const uint64_t here = reinterpret_cast<uint64_t>(sp);
  for (uint32_t i = 0; i < g.mapCount; ++i) {
    if (g.maps[i].start <= here && here < g.maps[i].end) g.oldStack = Range{g.maps[i].start, g.maps[i].end};
  }
  if (g.oldStack.empty()) fail("cannot find the initial stack in /proc/self/maps");

  SelfInput in{};
  in.plan = g.plan;
  in.image = g.image;
  in.planMap = g.planMap;
  in.vdso = g.vdso;
  in.maps = g.maps;
  in.mapCount = g.mapCount;
  in.stackLimit = readRlimitCur(kRlimitStack);
  in.lo = 1ull << 32;
  in.hi = kUserTop;
  // The restorer's code and data stay in the restored process. As a mapping of the
  // mig-restore file they would make a checkpoint of the restored process depend on
  // that very file (the checkpointer maps file regions from their file at restart, and
  // checks it did not change): always continue from an anonymous copy.
  in.alwaysMoveImage = true;
  if (const char* problem = computeSelfLayout(in, &g.layout)) fail("moving out of the way", problem);
  const SelfLayout& L = g.layout;

  m = mmap(L.privateStack.start, L.privateStack.size(), kProtRead | kProtWrite,
           kMapPrivate | kMapAnonymous | kMapFixedNoreplace, -1, 0);
  if (m < 0) failErr("mapping the restorer's stack", m);
  if (static_cast<uint64_t>(m) != L.privateStack.start) failErr("mapping the restorer's stack (moved)", -kEINVAL);
  if (L.movePlan) {
    r = mremap(g.planMap.start, g.planMap.size(), L.planTo);
    if (r < 0) failErr("moving the plan out of the way", r);
    g.planMap = Range{L.planTo, L.planTo + g.planMap.size()};
    g.plan = reinterpret_cast<const plan::Header*>(L.planTo);
  }
  if (L.moveVdso) moveVdsoUnit(L.vdsoTo, "moving the vDSO out of the way");

  void (*next)(void*) = phaseB;
  if (L.moveImage) {
    copyImage(L.imageTo);
    next = reinterpret_cast<void (*)(void*)>(reinterpret_cast<uint64_t>(next) - g.image.start + L.imageTo);
  }
  mig_switch_stack(L.privateStack.end, next, nullptr);
}

// ---- steps 2 and 3: regions and pages ---------------------------------------------------

// Saved pages are copied into the mapping made for their region, never mapped from
// the image (restore_plan.h, PagesMethod): the job's memory stays what it was, private
// anonymous or a private map of its own file, for MADV_DONTNEED, /proc/PID/maps and a
// later checkpoint.
bool copiedRun(const plan::Pages& p) { return p.method == plan::kPagesCopy; }

// Reads `n` copied page runs whose image bytes follow each other (readBatchEnd) with
// one preadv (more where the kernel reads less at a time): one system call where a
// pread each was thousands for pre-copy's rounds.
void readRuns(const plan::Pages* runs, uint32_t n) {
  Iovec iov[kMaxReadBatch];
  uint64_t total = 0;
  for (uint32_t k = 0; k < n; ++k) {
    iov[k].base = reinterpret_cast<const void*>(runs[k].addr);
    iov[k].len = runs[k].len;
    total += runs[k].len;
    // A big run's pages made in one call before the copy: ~20 % less CPU than a fault
    // per page inside the read. Only an optimization: an older kernel says EINVAL.
    if (runs[k].len >= kPopulateMinBytes) sys::rawSyscall(sys::kMadvise, runs[k].addr, runs[k].len, kMadvPopulateWrite);
  }
  uint32_t at = 0;  // the first iovec not read whole
  uint64_t done = 0;
  while (done < total) {
    long r = sys::rawSyscall(sys::kPreadv, g.imageFd, reinterpret_cast<long>(iov + at), static_cast<long>(n - at),
                             static_cast<long>(runs[0].imageOffset + done), 0);
    if (r == -kEINTR) continue;
    if (r <= 0) {
      // The run where the read stopped, as the one-run read said it.
      const plan::Pages& p = runs[at];
      const uint64_t into = reinterpret_cast<uint64_t>(iov[at].base) - p.addr;
      Line w;
      w.str("reading saved pages ").range(p.addr, p.addr + p.len).str(" at image offset ").udec(p.imageOffset + into);
      if (r == 0) {
        w.str(": the image file ends there");
        fail(w.data());
      }
      failErr(w, r);
    }
    done += static_cast<uint64_t>(r);
    uint64_t left = static_cast<uint64_t>(r);
    while (at < n && left >= iov[at].len) left -= iov[at++].len;
    if (at < n) {
      iov[at].base = static_cast<const char*>(iov[at].base) + left;
      iov[at].len -= left;
    }
  }
  g.copiedRuns += n;
  g.copiedBytes += total;
}

[[noreturn]] void regionFail(const char* what, const plan::Region& r, long err) {
  Line w;
  w.str(what).str(" region ").range(r.start, r.end);
  if (r.path != plan::kNoString) w.str(" (").str(plan::string(g.plan, r.path)).str(")");
  failErr(w, err);
}

// Views of one shared memory object (shared anonymous memory mapped twice, e.g. with
// mremap(old_size 0), or a memfd mapped twice) must stay one object, or writes through
// one view are not seen through the other. The plan marks them with the same nonzero
// Region::reserved ("share group") on MAP_SHARED regions of kSourceZero, fileOffset
// being the view's offset in the object (the offset column of /proc/pid/maps). All
// views of a group are mapped from one new memfd when the group's first region comes.
bool inShareGroup(const plan::Region& r) {
  return r.reserved != 0 && (r.mapFlags & kMapShared) && r.source == plan::kSourceZero;
}

void mapShareGroup(uint32_t first) {
  const plan::Header* h = g.plan;
  const plan::Region* regions = plan::regions(h);
  const uint32_t group = regions[first].reserved;
  uint64_t size = 0;
  for (uint32_t j = first; j < h->regionCount; ++j) {
    const plan::Region& r = regions[j];
    if (!inShareGroup(r) || r.reserved != group) continue;
    if (r.fileOffset % kPage != 0 || r.fileOffset > (1ull << 46)) {
      regionFail("mapping (bad offset in its share group)", r, -kEINVAL);
    }
    if (r.fileOffset + (r.end - r.start) > size) size = r.fileOffset + (r.end - r.start);
  }
  // Name the object after the memfd it was ("/memfd:NAME (deleted)"), if it was one.
  char name[64] = "mig-shared";
  if (regions[first].path != plan::kNoString) {
    const char* p = plan::string(h, regions[first].path);
    const char* prefix = "/memfd:";
    int i = 0;
    while (prefix[i] != '\0' && p[i] == prefix[i]) ++i;
    if (prefix[i] == '\0') {
      int n = 0;
      for (const char* q = p + i; *q != '\0' && n < 63; ++q) {
        bool deleted = true;
        const char* suffix = " (deleted)";
        for (int k = 0; suffix[k] != '\0'; ++k) deleted = deleted && q[k] == suffix[k];
        if (deleted) break;
        name[n++] = *q;
      }
      if (n > 0) name[n] = '\0';
    }
  }
  long fd = sys::rawSyscall(sys::kMemfdCreate, reinterpret_cast<long>(name), kMfdCloexec);
  if (fd < 0) regionFail("creating the shared object (memfd) of", regions[first], fd);
  long r = sys::rawSyscall(sys::kFtruncate, fd, static_cast<long>(size));
  if (r < 0) regionFail("sizing the shared object (memfd) of", regions[first], r);
  for (uint32_t j = first; j < h->regionCount; ++j) {
    const plan::Region& v = regions[j];
    if (!inShareGroup(v) || v.reserved != group) continue;
    const int prot = static_cast<int>(v.prot) | (testBit(g.needWrite, j) ? kProtWrite : 0);
    long m = mmap(v.start, v.end - v.start, prot, kMapShared | kMapFixed, static_cast<int>(fd), v.fileOffset);
    if (m < 0) regionFail("mapping a view of a shared object:", v, m);
    setBit(g.grouped, j);
  }
  closeFd(fd);
}

// Lazy pages (resources/lazy_pages.h): every region holding kPagesLazy pages stays
// missing and is registered with a userfaultfd, which goes to the page server over
// Header::lazySocket; from then on any access to a missing page there, by the
// application, by this restorer or by the kernel in a system call (not
// UFFD_USER_MODE_ONLY: migctl asks for lazy pages only where that is allowed), waits
// until the server has put the saved page in place. Done before anything reads or
// writes restored memory, so that no page is touched before its saved contents arrive.
// The events let the server follow what the job does to its memory meanwhile: fork
// (a child gets missing pages too), mremap, MADV_DONTNEED and munmap (those pages must
// not be filled any more).
void startLazyPages() {
  const plan::Header* h = g.plan;
  const plan::Region* regions = plan::regions(h);
  long ufd = sys::rawSyscall(sys::kUserfaultfd, kOCloexec | kONonblock);
  if (ufd < 0) failErr("userfaultfd (lazy pages)", ufd);
  UffdioApi api{};
  api.api = kUffdApi;
  api.features = kUffdFeatureEventFork | kUffdFeatureEventRemap | kUffdFeatureEventRemove | kUffdFeatureEventUnmap |
                 kUffdFeatureThreadId;
  long r = sys::rawSyscall(sys::kIoctl, ufd, static_cast<long>(kUffdioApi), reinterpret_cast<long>(&api));
  if (r < 0) failErr("userfaultfd UFFDIO_API (lazy pages)", r);
  for (uint32_t i = 0; i < h->regionCount; ++i) {
    if (!testBit(g.lazy, i)) continue;
    UffdioRegister reg{};
    reg.start = regions[i].start;
    reg.len = regions[i].end - regions[i].start;
    reg.mode = kUffdioRegisterModeMissing;
    r = sys::rawSyscall(sys::kIoctl, ufd, static_cast<long>(kUffdioRegister), reinterpret_cast<long>(&reg));
    if (r < 0) regionFail("registering for lazy pages (UFFDIO_REGISTER)", regions[i], r);
  }
  char byte = 'U';
  Iovec iov{&byte, 1};
  CmsgOneFd cmsg{};
  cmsg.len = 16 + sizeof(int32_t);  // CMSG_LEN(sizeof(int))
  cmsg.level = kSolSocket;
  cmsg.type = kScmRights;
  cmsg.fd = static_cast<int32_t>(ufd);
  Msghdr msg{};
  msg.iov = &iov;
  msg.iovLen = 1;
  msg.control = &cmsg;
  msg.controlLen = sizeof(cmsg);
  for (;;) {
    r = sys::rawSyscall(sys::kSendmsg, h->lazySocket, reinterpret_cast<long>(&msg), kMsgNosignal);
    if (r != -kEINTR) break;
  }
  if (r < 0) failErr("handing the userfaultfd to the page server", r);
  g.lazyHandedOver = true;
  closeFd(ufd);
  closeFd(h->lazySocket);
  debug("lazy regions registered, page server has them");
}

void mapRegions() {
  const plan::Header* h = g.plan;
  const plan::Region* regions = plan::regions(h);
  const plan::Pages* pages = plan::pages(h);
  for (uint32_t i = 0; i < h->pagesCount; ++i) {
    setBit(pages[i].method == plan::kPagesLazy ? g.lazy : g.needWrite, pages[i].region);
  }

  long fd = -1;
  uint32_t fdPath = plan::kNoString;
  int fdMode = -1;
  for (uint32_t i = 0; i < h->regionCount; ++i) {
    const plan::Region& r = regions[i];
    if (r.kind == plan::kKindVdso || r.kind == plan::kKindVvar || r.kind == plan::kKindVvarVclock) continue;
    if (inShareGroup(r)) {
      if (!testBit(g.grouped, i)) mapShareGroup(i);
      continue;
    }
    const bool shared = (r.mapFlags & kMapShared) != 0;
    const bool copyIn = testBit(g.needWrite, i);
    const int prot = static_cast<int>(r.prot) | (copyIn ? kProtWrite : 0);
    long m;
    if (r.source == plan::kSourceSysvShm) {
      // An attachment of a System V segment made again (same id) by migctl: shmat,
      // so that the job's shmdt and the segment's attach count work as before.
      const int flags = kShmRemap | ((prot & kProtWrite) ? 0 : kShmRdonly) | ((r.prot & kProtExec) ? kShmExec : 0);
      m = sys::rawSyscall(sys::kShmat, static_cast<long>(r.reserved), static_cast<long>(r.start), flags);
      if (m < 0) regionFail("attaching the System V segment of", r, m);
      if (r.fileOffset & plan::kShmRemoveAfter) {
        long rm = sys::rawSyscall(sys::kShmctl, static_cast<long>(r.reserved), kIpcRmid, 0);
        if (rm < 0) regionFail("removing (IPC_RMID) the System V segment of", r, rm);
      }
    } else if (r.source == plan::kSourceFile) {
      const int mode = shared && (prot & kProtWrite) ? kOReadWrite : kOReadOnly;
      if (fd < 0 || fdPath != r.path || fdMode != mode) {
        closeFd(fd);
        fd = openRead(plan::string(h, r.path), mode);
        if (fd < 0) regionFail("opening the file of", r, fd);
        fdPath = r.path;
        fdMode = mode;
      }
      m = mmap(r.start, r.end - r.start, prot, (shared ? kMapShared : kMapPrivate) | kMapFixed, static_cast<int>(fd),
               r.fileOffset);
    } else {
      int flags = (shared ? kMapShared : kMapPrivate) | kMapAnonymous | kMapFixed;
      // The main thread's stack must go on growing: /proc/PID/maps does not say
      // grows-down, so the image knows it only as a stack.
      if ((r.mapFlags & kMapGrowsdown) || r.kind == plan::kKindStack) flags |= kMapGrowsdown;
      m = mmap(r.start, r.end - r.start, prot, flags, -1, 0);
    }
    if (m < 0) regionFail("mapping", r, m);
    if (static_cast<uint64_t>(m) != r.start) regionFail("mapping (the kernel chose another address for)", r, -kEINVAL);
  }
  closeFd(fd);

  for (uint32_t i = 0; i < h->pagesCount;) {
    if (!copiedRun(pages[i])) {
      ++i;
      continue;
    }
    const uint32_t end = readBatchEnd(pages, h->pagesCount, i, kMaxReadBatch, copiedRun);
    readRuns(pages + i, end - i);
    i = end;
  }

  for (uint32_t i = 0; i < h->regionCount; ++i) {
    const plan::Region& r = regions[i];
    if (!testBit(g.needWrite, i) || (r.prot & kProtWrite)) continue;
    long res = sys::rawSyscall(sys::kMprotect, static_cast<long>(r.start), static_cast<long>(r.end - r.start),
                               static_cast<long>(r.prot));
    if (res < 0) regionFail("protecting", r, res);
  }
  if (h->lazySocket > 0) startLazyPages();
}

// ---- step 4: vDSO ----------------------------------------------------------------------

void placeVdso() {
  if (!g.target.present()) return;
  const uint64_t to = g.target.span().start;
  if (g.vdso.span().start == to) return;
  moveVdsoUnit(to, "moving the vDSO to the image's address");
}

// ---- step 5: mm layout -----------------------------------------------------------------

void setMmLayout() {
  const plan::Header* h = g.plan;
  if (!(h->flags & plan::kPlanHasMmLayout)) return;
  const plan::MmLayout& mm = h->mm;
  PrctlMmMap map{};
  map.startCode = mm.startCode;
  map.endCode = mm.endCode;
  map.startData = mm.startData;
  map.endData = mm.endData;
  map.startBrk = mm.startBrk;
  map.brk = mm.brk;
  map.startStack = mm.startStack;
  map.argStart = mm.argStart;
  map.argEnd = mm.argEnd;
  map.envStart = mm.envStart;
  map.envEnd = mm.envEnd;
  map.auxv = mm.auxvLen > 0 ? reinterpret_cast<uint64_t>(plan::blob(h, mm.auxv)) : 0;
  map.auxvSize = static_cast<uint32_t>(mm.auxvLen);
  map.exeFd = 0xffffffffu;  // keep /proc/self/exe (changing it needs CAP_CHECKPOINT_RESTORE)
  long r = sys::rawSyscall(sys::kPrctl, kPrSetMm, kPrSetMmMap, reinterpret_cast<long>(&map), sizeof(map), 0);
  if (r == 0) return;
  // Say which field the kernel objects to, by repeating its checks.
  uint64_t minAddr = 65536;
  char buf[64];
  if (readSmallFile("/proc/sys/vm/mmap_min_addr", buf, sizeof(buf)) > 0) {
    minAddr = 0;
    for (int i = 0; buf[i] >= '0' && buf[i] <= '9'; ++i) minAddr = minAddr * 10 + static_cast<uint64_t>(buf[i] - '0');
  }
  // 448 bytes: AT_VECTOR_SIZE (56 words) on 6.18 x86_64; only used to explain a refusal.
  const char* why = checkMmLayout(mm, minAddr, readRlimitCur(7 /* RLIMIT_DATA */), 448);
  Line w;
  w.str("prctl(PR_SET_MM, PR_SET_MM_MAP)");
  if (why != nullptr) w.str(" (").str(why).str(")");
  failErr(w, r);
}

// ---- step 6: signals and timer -------------------------------------------------------

void setSignals() {
  const plan::Header* h = g.plan;
  const plan::SigAction* sa = plan::sigactions(h);
  // The actions it had, for a deputy that comes back (comeBack; 64 system calls only then).
  if (g.comeBackFd > 2) {
    for (int sig = 1; sig <= 64; ++sig) {
      sys::rawSyscall(sys::kRtSigaction, sig, 0, reinterpret_cast<long>(&g.oldActions[sig - 1]), 8);
    }
    g.actionsSaved = true;
  }
  for (uint32_t i = 0; i < h->sigactionCount; ++i) {
    const int sig = static_cast<int>(i + 1);
    if (sig == kSigKill || sig == kSigStop) continue;
    plan::SigAction act = sa[i];
    long r = sys::rawSyscall(sys::kRtSigaction, sig, reinterpret_cast<long>(&act), 0, 8);
    if (r < 0) {
      Line w;
      w.str("rt_sigaction(").dec(sig).str(")");
      failErr(w, r);
    }
  }
  // Always set: a timer armed in the process that exec'd the restorer survives exec.
  Itimerval it{};
  if (h->itimerValueNs > 0) {
    const int64_t valueUs = (h->itimerValueNs + 999) / 1000;  // never round a running timer to "disarmed"
    const int64_t intervalUs = (h->itimerIntervalNs + 999) / 1000;
    it.value = Timeval{valueUs / 1000000, valueUs % 1000000};
    it.interval = Timeval{intervalUs / 1000000, intervalUs % 1000000};
  }
  long r = sys::rawSyscall(sys::kSetitimer, kItimerReal, reinterpret_cast<long>(&it), 0);
  if (r < 0) failErr("setitimer(ITIMER_REAL)", r);
}

// The kernel named the process after the restorer's file at exec ("mig-restore" in ps,
// top, pgrep, killall). Name it after the restored argv[0] instead; threads created
// afterwards inherit it. Each thread then takes the name it had, when the image has
// it (setUpThread): argv[0] may have been rewritten (redis' "redis-server *:6379").
void setProcessName() {
  const plan::Header* h = g.plan;
  if (!(h->flags & plan::kPlanHasMmLayout) || h->mm.argEnd <= h->mm.argStart) return;
  uint64_t len = h->mm.argEnd - h->mm.argStart;
  if (len > 4096) len = 4096;
  const int64_t ri = regionContaining(h, h->mm.argStart, len);
  if (ri < 0 || !(plan::regions(h)[ri].prot & kProtRead)) return;
  const char* arg0 = reinterpret_cast<const char*>(h->mm.argStart);
  uint64_t end = 0, base = 0;
  while (end < len && arg0[end] != '\0') {
    if (arg0[end] == '/') base = end + 1;
    ++end;
  }
  char name[16] = {};
  for (uint64_t i = 0; i < 15 && base + i < end; ++i) name[i] = arg0[base + i];
  if (name[0] == '\0') return;
  sys::rawSyscall(sys::kPrctl, kPrSetName, reinterpret_cast<long>(name));
}

// ---- step 7: fds ---------------------------------------------------------------------

void setFds() {
  const plan::Header* h = g.plan;
  const plan::Fd* fds = plan::fds(h);
  for (uint32_t i = 0; i < h->fdCount; ++i) {
    long r = sys::rawSyscall(sys::kFcntl, fds[i].fd, kFSetfd, (fds[i].flags & plan::kFdCloexec) ? kFdCloexec : 0);
    if (r < 0) {
      Line w;
      w.str("setting close-on-exec of application fd ").dec(fds[i].fd);
      failErr(w, r);
    }
  }
  // The shim puts its own fds just under min(RLIMIT_NOFILE, forward::kMaxFds)
  // (shim/own_fds.h): the fd table grows to hold them now, while this process is alone
  // in it. Grown by the shim's first fd, with the job's threads sharing the table, the
  // kernel first waits for an RCU grace period (expand_fdtable): 5 ms and more at load,
  // inside a hop's freeze. (A number taken there: the table holds it already.)
  const uint64_t limit = readRlimitCur(kRlimitNofile);
  const uint64_t top = limit < forward::kMaxFds ? limit : forward::kMaxFds;
  if (top > 0) {
    long grown = sys::rawSyscall(sys::kFcntl, g.planFd, kFDupfd, static_cast<long>(top - 1));
    if (grown >= 0) closeFd(grown);
  }
  closeFd(g.planFd);
  closeFd(g.imageFd);
  g.planFd = g.imageFd = -1;
}

// ---- step 8: resume info ---------------------------------------------------------------

void writeResumeInfo() {
  const plan::Header* h = g.plan;
  if (h->resumeInfoAddr == 0) return;
  auto* info = reinterpret_cast<plan::ResumeInfo*>(h->resumeInfoAddr);
  info->realPid = g.pid;
  // 0 is what a zero-initialised plan header holds: never a config fd (it is stdin).
  info->configFd = h->configFd > 0 ? h->configFd : -1;
  info->monotonicNs = monotonicNs();
  info->restorerStart = g.image.start;
  info->restorerEnd = g.image.end;
  __atomic_store_n(&info->magic, plan::kResumeMagic, __ATOMIC_RELEASE);
}

// ---- step 9: threads ----------------------------------------------------------------------

void loadThreads() {
  const plan::Header* h = g.plan;
  const plan::Thread* t = plan::threads(h);
  g.threadCount = h->threadCount;
  for (uint32_t i = 0; i < h->threadCount; ++i) {
    ThreadCtl& c = g.threads[i];
    c.sigframeAddr = t[i].sigframeAddr;
    c.kernel = t[i].kernel;
    __builtin_memcpy(c.name, t[i].name, sizeof(c.name));
    c.name[sizeof(c.name) - 1] = '\0';
    c.pendingMask = t[i].pendingMask;
    c.vtid = t[i].vtid;
    c.oldTid = t[i].oldTid != 0 ? t[i].oldTid : t[i].vtid;
    if (t[i].flags & plan::kThreadMain) {
      g.mainIndex = i;
      g.vpid = t[i].vtid;
    }
    if (t[i].sigframeLen > 0) {
      // The frame starts with the 8-byte return address (pretcode), then the ucontext.
      __builtin_memcpy(reinterpret_cast<void*>(t[i].sigframeAddr - 8), plan::blob(h, t[i].sigframe), t[i].sigframeLen);
    }
  }
}

// A thread other than the main one says nothing: it may run after the main thread has
// closed the log fd and returned into the application, whose file may have that number
// by then. It cannot fail anyway short of the kernel changing its mind: the main thread
// tried its set-up first (checkThreadSetUp).
[[noreturn]] void threadFail(const ThreadCtl& t, const char* what, long err, bool quiet = false) {
  if (quiet) {
    for (;;) sys::rawSyscall(sys::kExitGroup, 127);
  }
  Line w;
  w.str(what).str(" for thread ").dec(t.vtid);
  failErr(w, err);
}

// Registers t's rseq area for the calling thread; returns the length registered (0: none).
uint32_t registerRseq(const ThreadCtl& t, bool quiet) {
  if (t.kernel.rseqAddr == 0) return 0;
  // The kernel refuses areas shorter than the original struct rseq (32 bytes); glibc's
  // area is that size even though glibc 2.36 reports __rseq_size 20.
  const uint32_t len = t.kernel.rseqLen < kRseqMinLen ? kRseqMinLen : t.kernel.rseqLen;
  long r = sys::rawSyscall(sys::kRseq, static_cast<long>(t.kernel.rseqAddr), len, 0, t.kernel.rseqSig);
  if (r == -kEINVAL || r == -kEBUSY) {
    // The saved area still holds the old process's cpu ids; clear them and try again.
    auto* area = reinterpret_cast<volatile uint32_t*>(t.kernel.rseqAddr);
    area[kRseqCpuIdStart / 4] = 0;
    area[kRseqCpuId / 4] = kRseqCpuIdUninitialized;
    *reinterpret_cast<volatile uint64_t*>(t.kernel.rseqAddr + kRseqCs) = 0;
    long again = sys::rawSyscall(sys::kRseq, static_cast<long>(t.kernel.rseqAddr), len, 0, t.kernel.rseqSig);
    if (again < 0) threadFail(t, "rseq registration (also after clearing its cpu ids)", again, quiet);
    if (!quiet) {
      Line l;
      l.str("rseq of thread ").dec(t.vtid).str(" registered after clearing its cpu ids (first try: errno ").dec(-r).str(")");
      debugLine(l);
    }
    return len;
  }
  if (r < 0) threadFail(t, "rseq registration", r, quiet);
  return len;
}

bool restoredMemory(uint64_t addr, uint64_t len, int prot) {
  int64_t i = regionContaining(g.plan, addr, len);
  return i >= 0 && (plan::regions(g.plan)[i].prot & prot) == static_cast<uint32_t>(prot);
}

void adoptFutexOwner(uint64_t word, int32_t oldTid, int32_t newTid) {
  constexpr uint32_t kTidMask = 0x3fffffff;  // FUTEX_TID_MASK
  if (word % 4 != 0 || !restoredMemory(word, 4, kProtRead | kProtWrite)) return;
  auto* w = reinterpret_cast<uint32_t*>(word);
  uint32_t v = __atomic_load_n(w, __ATOMIC_RELAXED);
  while ((v & kTidMask) == static_cast<uint32_t>(oldTid) &&
         !__atomic_compare_exchange_n(w, &v, (v & ~kTidMask) | static_cast<uint32_t>(newTid), false,
                                      __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
  }
}

// Robust mutexes the thread holds name its old TID in their futex words; when the
// thread dies the kernel marks OWNER_DIED only in words naming its current TID, so
// rewrite them (the futex word is kernel ABI; glibc's own __owner field is the shim's
// business). The list is walked with every pointer checked against the restored
// regions and at most 2048 entries (ROBUST_LIST_LIMIT), so a corrupt list is left alone.
// The old TID: Thread::reserved when the plan sets it (the thread's real TID at the
// checkpoint, which differs from vtid once a process has been restored before), else vtid.
void adoptRobustMutexes(const ThreadCtl& t, int32_t newTid) {
  const int32_t oldTid = t.oldTid;
  if (t.kernel.robustList == 0 || t.kernel.robustListLen != 24 || oldTid == newTid) return;
  if (t.kernel.robustList % 8 != 0 || !restoredMemory(t.kernel.robustList, 24, kProtRead)) return;
  const auto* head = reinterpret_cast<const uint64_t*>(t.kernel.robustList);
  const int64_t futexOffset = static_cast<int64_t>(head[1]);
  uint64_t entry = head[0] & ~1ull;
  for (int n = 0; n < 2048 && entry != t.kernel.robustList; ++n) {
    if (entry % 8 != 0 || !restoredMemory(entry, 8, kProtRead)) break;
    adoptFutexOwner(entry + static_cast<uint64_t>(futexOffset), oldTid, newTid);
    entry = *reinterpret_cast<const uint64_t*>(entry) & ~1ull;
  }
  const uint64_t pending = head[2] & ~1ull;
  if (pending != 0) adoptFutexOwner(pending + static_cast<uint64_t>(futexOffset), oldTid, newTid);
}

bool hasAltStack(const ThreadCtl& t) {
  return t.kernel.altStackSize != 0 && !(t.kernel.altStackFlags & kSsDisable);
}

StackT altStack(const ThreadCtl& t) {
  StackT ss{};
  ss.sp = t.kernel.altStackSp;
  ss.size = t.kernel.altStackSize;
  // SS_ONSTACK is only reported
  ss.flags = static_cast<int32_t>(static_cast<uint32_t>(t.kernel.altStackFlags) & kSsAutodisarm);
  return ss;
}

// The per-thread kernel state every restored thread re-creates for itself. The other
// threads' robust mutexes and pending signals are the main thread's work (startThreads).
void setUpThread(const ThreadCtl& t, bool isMain) {
  long r;
  if (isMain) {
    r = sys::rawSyscall(sys::kArchPrctl, kArchSetFs, static_cast<long>(t.kernel.fsBase));
    if (r < 0) threadFail(t, "arch_prctl(ARCH_SET_FS)", r);
    if (t.kernel.tidAddress != 0) {
      // glibc caches the thread's TID in struct pthread (pthread_kill, raise use it):
      // the kernel fills it for cloned threads (CLONE_PARENT_SETTID), the main
      // thread's is written here.
      r = sys::rawSyscall(sys::kSetTidAddress, static_cast<long>(t.kernel.tidAddress));
      *reinterpret_cast<volatile int32_t*>(t.kernel.tidAddress) = static_cast<int32_t>(r);
    }
  }
  if (t.kernel.gsBase != 0) {
    r = sys::rawSyscall(sys::kArchPrctl, kArchSetGs, static_cast<long>(t.kernel.gsBase));
    if (r < 0) threadFail(t, "arch_prctl(ARCH_SET_GS)", r);
  }
  if (t.kernel.robustList != 0) {
    r = sys::rawSyscall(sys::kSetRobustList, static_cast<long>(t.kernel.robustList),
                        static_cast<long>(t.kernel.robustListLen));
    if (r < 0) threadFail(t, "set_robust_list", r, !isMain);
    if (isMain) adoptRobustMutexes(t, static_cast<int32_t>(sys::rawSyscall(sys::kGettid)));
  }
  registerRseq(t, !isMain);
  if (hasAltStack(t)) {
    StackT ss = altStack(t);
    r = sys::rawSyscall(sys::kSigaltstack, reinterpret_cast<long>(&ss), 0);
    if (r < 0) threadFail(t, "sigaltstack", r, !isMain);
  }
  if (t.name[0] != '\0') sys::rawSyscall(sys::kPrctl, kPrSetName, reinterpret_cast<long>(t.name));
}

// What another thread's set-up could refuse, tried on the main thread (whose own comes
// later) and undone, so that a refusal ends the restore before any thread runs and the
// main thread need not wait for the others to be scheduled (milliseconds on a loaded
// host) before it returns into the application.
void checkThreadSetUp(const ThreadCtl& t) {
  // The length is all set_robust_list checks.
  if (t.kernel.robustList != 0 && t.kernel.robustListLen != kRobustListHeadLen) {
    threadFail(t, "set_robust_list", -kEINVAL);
  }
  if (const uint32_t len = registerRseq(t, false)) {
    long r = sys::rawSyscall(sys::kRseq, static_cast<long>(t.kernel.rseqAddr), len, kRseqFlagUnregister,
                             t.kernel.rseqSig);
    if (r < 0) threadFail(t, "rseq unregistration after its trial", r);
  }
  if (hasAltStack(t)) {
    StackT ss = altStack(t);
    long r = sys::rawSyscall(sys::kSigaltstack, reinterpret_cast<long>(&ss), 0);
    if (r < 0) threadFail(t, "sigaltstack", r);
    StackT off{};
    off.flags = kSsDisable;
    sys::rawSyscall(sys::kSigaltstack, reinterpret_cast<long>(&off), 0);
  }
}

// Queues pending signals again; they stay blocked until rt_sigreturn restores the
// saved mask. First the plan's PendingSignal entries of this thread (or of the process),
// each with the siginfo it was sent with, in queue order: realtime signals keep their
// values and repetitions. Then the signals the plan has only as a mask bit (the
// checkpointer could not read their siginfo): each is queued once as if the process
// had sent it to itself (si_pid = the process's virtual
// PID, which is what getpid() says in the restored process; SI_TKILL for a thread's
// own signals, as raise() and pthread_kill() make them, SI_USER for the process's, as
// kill() does). The sender, realtime signal values and repeated realtime signals are
// lost.
void queuePending(const ThreadCtl& t, uint64_t mask, int32_t tid, bool processWide) {
  const int32_t owner = processWide ? plan::kProcessWide : static_cast<int32_t>(&t - g.threads);
  const plan::PendingSignal* saved = plan::pendingSignals(g.plan);
  for (uint32_t i = 0; i < g.plan->pendingCount; ++i) {
    if (saved[i].thread != owner) continue;
    SigInfo si;
    __builtin_memcpy(&si, saved[i].info, sizeof(si));
    long r = processWide ? sys::rawSyscall(sys::kRtSigqueueinfo, g.pid, si.signo, reinterpret_cast<long>(&si))
                         : sys::rawSyscall(sys::kRtTgsigqueueinfo, g.pid, tid, si.signo, reinterpret_cast<long>(&si));
    if (r < 0) {
      Line w;
      w.str(processWide ? "re-queueing process-wide pending signal " : "re-queueing pending signal ").dec(si.signo);
      threadFail(t, w.data(), r);
    }
  }
  for (int sig = 1; sig <= 64; ++sig) {
    if (!((mask >> (sig - 1)) & 1) || sig == kSigKill || sig == kSigStop) continue;
    SigInfo si{};
    si.signo = sig;
    si.code = processWide ? kSiUser : kSiTkill;
    si.pid = g.vpid;
    si.uid = g.uid;
    long r = processWide ? sys::rawSyscall(sys::kRtSigqueueinfo, g.pid, sig, reinterpret_cast<long>(&si))
                         : sys::rawSyscall(sys::kRtTgsigqueueinfo, g.pid, tid, sig, reinterpret_cast<long>(&si));
    if (r < 0) {
      Line w;
      w.str(processWide ? "re-queueing process-wide pending signal " : "re-queueing pending signal ").dec(sig);
      threadFail(t, w.data(), r);
    }
  }
}

// ---- POSIX timers --------------------------------------------------------------------

[[noreturn]] void timerFail(const plan::PosixTimer& t, const char* what, long err) {
  Line w;
  w.str(what).str(" for POSIX timer ").dec(t.id);
  failErr(w, err);
}

// The timer with id t.id, made by timer_create. With the prctl (Linux >= 6.17) the kernel
// takes the id from *created_timer_id; before it, ids are handed out in increasing
// order per process, so timers are made and deleted until the id comes up (the plan
// lists them by id, and this process has made no other timer since the exec).
void createTimer(const plan::PosixTimer& t, Sigevent& ev, bool chosenIds) {
  for (uint32_t tries = 0; tries < (1u << 20); ++tries) {
    int32_t id = t.id;
    long r = sys::rawSyscall(sys::kTimerCreate, t.clock, reinterpret_cast<long>(&ev), reinterpret_cast<long>(&id));
    if (r < 0) timerFail(t, "timer_create", r);
    if (id == t.id) return;
    if (chosenIds || id > t.id) timerFail(t, "timer_create gave another id", -kEBUSY);
    sys::rawSyscall(sys::kTimerDelete, id);
  }
  timerFail(t, "timer_create never gave the id", -kEBUSY);
}

// After every thread exists and before any returns into the application (all signals
// are blocked until then, so an expiry now waits as a pending signal). A relative
// timer gets the time it had left at the freeze, so time spent checkpointed does not
// count, as for the process's sleeps; an absolute CLOCK_REALTIME one keeps its date.
void createTimers() {
  const plan::Header* h = g.plan;
  if (h->timerCount == 0) return;
  const bool chosenIds =
      sys::rawSyscall(sys::kPrctl, kPrTimerCreateRestoreIds, kPrTimerCreateRestoreIdsOn, 0, 0, 0) == 0;
  const plan::PosixTimer* pt = plan::posixTimers(h);
  for (uint32_t i = 0; i < h->timerCount; ++i) {
    const plan::PosixTimer& t = pt[i];
    Sigevent ev{};
    ev.value = t.value;
    ev.signo = t.signo;
    ev.notify = t.notify;
    if (t.notify & kSigevThreadId) ev.tid = g.threads[t.thread].newTid;
    createTimer(t, ev, chosenIds);
    if (t.valueNs == 0 && t.absoluteNs == 0) continue;  // disarmed
    Itimerspec its{};
    const int64_t at = t.absoluteNs != 0 ? t.absoluteNs : t.valueNs;
    its.value = Timespec{at / 1000000000, at % 1000000000};
    its.interval = Timespec{t.intervalNs / 1000000000, t.intervalNs % 1000000000};
    long r = sys::rawSyscall(sys::kTimerSettime, t.id, t.absoluteNs != 0 ? kTimerAbstime : 0,
                             reinterpret_cast<long>(&its), 0);
    if (r < 0) timerFail(t, "timer_settime", r);
  }
  if (chosenIds) sys::rawSyscall(sys::kPrctl, kPrTimerCreateRestoreIds, kPrTimerCreateRestoreIdsOff, 0, 0, 0);
}

// Reads nothing of the plan, which the main thread may have unmapped by now: only g
// (the restorer's own data, which stays mapped).
[[noreturn]] void childMain(void* arg) {
  const ThreadCtl& t = *static_cast<const ThreadCtl*>(arg);
  setUpThread(t, false);
  waitFor(&g.go, 1);
  // The last child off the temporary stacks unmaps them.
  const Range& ts = g.layout.tempStacks;
  if (g.resumeEntry != 0) mig_resume_call(t.sigframeAddr, ts.start, ts.size(), &g.onTempStacks, g.resumeEntry);
  mig_resume(t.sigframeAddr, ts.start, ts.size(), &g.onTempStacks);
}

[[noreturn]] void startThreads() {
  const uint32_t children = g.threadCount - 1;
  if (children > 0) {
    const Range& ts = g.layout.tempStacks;
    long m = mmap(ts.start, ts.size(), kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixedNoreplace, -1, 0);
    if (m < 0) failErr("mapping the threads' temporary stacks", m);
    if (static_cast<uint64_t>(m) != ts.start) failErr("mapping the threads' temporary stacks (moved)", -kEINVAL);
    // The application may run (and fork) before the last child has left them: a forked
    // process, which has none of these threads, must not inherit them.
    long a = sys::rawSyscall(sys::kMadvise, ts.start, ts.size(), kMadvDontfork);
    if (a < 0) failErr("madvise(MADV_DONTFORK) of the threads' temporary stacks", a);
    g.onTempStacks = children;
    Line l;
    l.str("threads' temporary stacks ").hex(ts.start).str("-").hex(ts.end);
    debugLine(l);
  }
  g.resumeEntry = g.plan->resumeEntry;
  for (uint32_t i = 0; i < g.threadCount; ++i) {
    if (i != g.mainIndex) checkThreadSetUp(g.threads[i]);
  }
  uint32_t k = 0;
  for (uint32_t i = 0; i < g.threadCount; ++i) {
    if (i == g.mainIndex) continue;
    const ThreadCtl& t = g.threads[i];
    uint64_t flags = kCloneVm | kCloneFs | kCloneFiles | kCloneSighand | kCloneThread | kCloneSysvsem | kCloneSettls;
    if (t.kernel.tidAddress != 0) flags |= kCloneParentSettid | kCloneChildCleartid;
    const uint64_t top = g.layout.tempStacks.start + (k + 1) * kTempStackSize;
    long tid =
        mig_clone(flags, top, t.kernel.tidAddress, t.kernel.tidAddress, t.kernel.fsBase, childMain, &g.threads[i]);
    if (tid < 0) threadFail(t, "clone", tid);
    g.threads[i].newTid = static_cast<int32_t>(tid);
    ++k;
    // Its robust mutexes and its pending signals (blocked, as every signal is in every
    // thread until its rt_sigreturn) are the main thread's work: whatever fails here
    // fails before any thread returns into the application, children included (they
    // wait for the go).
    adoptRobustMutexes(t, g.threads[i].newTid);
    queuePending(t, t.pendingMask, g.threads[i].newTid, false);
  }
  g.threads[g.mainIndex].newTid = g.pid;
  createTimers();
  const ThreadCtl& main = g.threads[g.mainIndex];
  setUpThread(main, true);
  queuePending(main, main.pendingMask, static_cast<int32_t>(sys::rawSyscall(sys::kGettid)), false);
  queuePending(main, g.plan->processPending, g.pid, true);
  // The last step that can fail (MIG_FAULT=hop:home-restorer:ACTION fails or crashes
  // here, shadow/hop_fault.h). From here the process is the job: a deputy that could
  // have come back gives up its table and its ticket's listener (closing cannot fail).
  if (g.fault == 2) sys::rawSyscall(sys::kKill, g.pid, kSigKill);
  if (g.fault == 1) fail("injected fault (MIG_FAULT=hop:home-restorer:error)");
  treeGo();
  if (g.comeBackFd > 2) {
    if (g.linkFd > 2) closeFd(g.linkFd);
    closeFd(g.comeBackFd);
    g.comeBackFd = 0;
  }
  releaseChildren();
  // The main thread does not wait for the children to leave their temporary stacks (a
  // wait for the scheduler to run each of them, milliseconds on a loaded host): every
  // thread is set up, so none can fail any more, and the last child unmaps the stacks.
  if (g.debug) {
    Line l;
    l.str("done: ").udec(g.plan->regionCount).str(" regions, ").udec(g.copiedRuns).str(" page runs copied (");
    l.udec(g.copiedBytes / 1024);
    l.str(" KiB), ").udec(g.threadCount).str(" threads; restorer left at ").hex(g.layout.moveImage ? g.layout.imageTo : g.image.start);
    debugLine(l);
  }
  // Nothing more to say: the log fd is not the job's (fd 2 without one is).
  if (g.logFd != 2) closeFd(g.logFd);
  __atomic_store_n(&g.go, 1, __ATOMIC_RELEASE);
  futexWakeAll(&g.go);
  munmap(g.planMap.start, g.planMap.size());
  if (g.resumeEntry != 0) {
    mig_resume_call(main.sigframeAddr, g.layout.privateStack.start, g.layout.privateStack.size(), nullptr,
                    g.resumeEntry);
  }
  mig_resume(main.sigframeAddr, g.layout.privateStack.start, g.layout.privateStack.size(), nullptr);
}

// Runs on the private stack, possibly in the moved copy of the restorer.
[[noreturn]] void phaseB(void*) {
  if (g.layout.moveImage) munmap(g.image.start, g.image.size());
  if (g.layout.moveImage) g.image = Range{g.layout.imageTo, g.layout.imageTo + g.image.size()};
  munmap(g.oldStack.start, g.oldStack.size());
  {
    Line l;
    l.str("out of the way: restorer ").hex(g.image.start).str(g.layout.moveImage ? " (moved)" : "");
    l.str(", plan ").hex(g.planMap.start).str(g.layout.movePlan ? " (moved)" : "");
    l.str(", stack ").hex(g.layout.privateStack.start).str(g.layout.moveVdso ? ", vDSO parked" : "");
    debugLine(l);
  }
  mapRegions();
  debug("regions mapped, pages in place");
  placeVdso();
  setMmLayout();
  setSignals();
  setFds();
  g.pid = static_cast<int32_t>(sys::rawSyscall(sys::kGetpid));
  g.uid = static_cast<uint32_t>(sys::rawSyscall(sys::kGetuid));
  writeResumeInfo();
  setProcessName();
  loadThreads();
  debug("process state set, starting threads");
  startThreads();
}

}  // namespace
}  // namespace mig::restore

extern "C" [[noreturn]] void mig_restore_start(uint64_t* sp) {
  using namespace mig::restore;
  g.startNs = monotonicNs();
  g.planFd = g.imageFd = g.linkFd = g.goFd = g.gateFd = -1;
  // Nothing may interrupt the restore: the application's handlers are installed long
  // before its memory is consistent. rt_sigreturn restores each thread's saved mask.
  uint64_t all = ~0ull;
  sys::rawSyscall(sys::kRtSigprocmask, kSigSetmask, reinterpret_cast<long>(&all), reinterpret_cast<long>(&g.oldMask), 8);
  phaseA(sp);
}

#pragma GCC visibility pop
