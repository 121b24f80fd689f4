// End-to-end test of mig-restore without the checkpoint side: a small multi-threaded
// program that checkpoints itself (every thread parked in a signal handler, memory
// written to an image file, a restore plan built by hand, the way the real checkpointer
// and plan builder do it) and, restarted by mig-restore, checks that it carries on
// exactly where it was with every piece of kernel state the restorer is responsible for.
//
//   self_checkpoint dump DIR               write DIR/plan and DIR/image, exit 0
//   self_checkpoint restore DIR RESTORER   set up fds as migctl would, exec RESTORER
//
// The restored process prints one line per check and "RESTORED OK" (exit 0) or
// "RESTORED WITH FAILURES" (exit 1).
#include "image/plan_check.h"
#include "image/restore_plan.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

namespace {

namespace plan = mig::plan;

constexpr int kCkptSig = 40;
constexpr uint64_t kPage = 4096;
constexpr size_t kBigSize = 4 << 20;

// ---- state the restored process checks ---------------------------------------------

alignas(16) plan::ResumeInfo g_resume;
volatile int g_counter = 0;
char* g_big = nullptr;       // 4 MiB from malloc (its own mmap): page runs large enough to map
char* g_small = nullptr;     // from the brk heap: small runs, copied
char* g_shared = nullptr;    // MAP_SHARED anonymous
char* g_shared2 = nullptr;   // a second view of the same pages (mremap old_size 0)
char* g_memfd1 = nullptr;    // a memfd mapped twice
char* g_memfd2 = nullptr;
char* g_filePriv = nullptr;  // MAP_PRIVATE of DIR/data, first page modified
char g_dir[512];
char g_cmdline[4096];
ssize_t g_cmdlineLen = 0;
char g_auxv[1024];
ssize_t g_auxvLen = 0;
uint64_t g_vdso = 0;
uint64_t g_brk = 0;
pid_t g_origPid = 0;
pid_t g_origWorkerTid = 0;
pthread_t g_worker;
thread_local int t_value = 0;
std::atomic<int> g_stop{0};
std::atomic<long> g_progress{0};
std::atomic<pid_t> g_workerTidNow{0};
std::atomic<int> g_workerRseqErrno{-1};
std::atomic<int> g_workerChecked{0};
std::atomic<uint64_t> g_workerRobust{0};
std::atomic<pid_t> g_usr1Tid{0};
std::atomic<int> g_usr1Count{0}, g_usr2Count{0}, g_winchCount{0};
std::atomic<int> g_usr2Code{99}, g_winchCode{99};
std::atomic<pid_t> g_usr2Pid{0}, g_winchPid{0};
std::atomic<int> g_parked{0};
uint32_t g_parkWord = 0;
char g_altStack[64 * 1024];

struct Saved {
  uint64_t ucontext;
  plan::ThreadKernelState kernel;  // what the shim's ThreadSlot records
  uint64_t pending;
  pid_t tid;
};
Saved g_saved[2];  // [0] main, [1] worker
// The worker's signal frame (from its return address up to the end of its FPU state),
// shipped in the plan's blob with SIGHUP added to the saved mask: restored, the worker
// has SIGHUP blocked only if the restorer copied the frame from the plan.
alignas(16) unsigned char g_workerFrame[32 * 1024];
uint64_t g_workerFrameLen = 0;
std::atomic<int> g_workerSighupBlocked{-1};
uint64_t g_processPending = 0;

pid_t gettidRaw() { return static_cast<pid_t>(syscall(SYS_gettid)); }

void say(const char* s) { (void)!write(1, s, strlen(s)); }

// ---- reading /proc in a signal handler (no malloc, no stdio) -------------------------

ssize_t readFile(const char* path, char* buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n <= 0) break;
    len += static_cast<size_t>(n);
    if (len + 1 >= cap) break;
  }
  close(fd);
  buf[len] = '\0';
  return static_cast<ssize_t>(len);
}

uint64_t statusMask(const char* status, const char* key) {
  const char* p = strstr(status, key);
  if (p == nullptr) return 0;
  return strtoull(p + strlen(key), nullptr, 16);
}

void saveThread(Saved* s, void* uc) {
  s->ucontext = reinterpret_cast<uint64_t>(uc);
  s->tid = gettidRaw();
  syscall(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, &s->kernel.fsBase);
  syscall(SYS_arch_prctl, 0x1004 /* ARCH_GET_GS */, &s->kernel.gsBase);
  uint64_t tidAddr = 0;
  prctl(PR_GET_TID_ADDRESS, &tidAddr);
  s->kernel.tidAddress = tidAddr;
  void* head = nullptr;
  size_t len = 0;
  syscall(SYS_get_robust_list, 0, &head, &len);
  s->kernel.robustList = reinterpret_cast<uint64_t>(head);
  s->kernel.robustListLen = len;
  if (__rseq_size > 0) {
    s->kernel.rseqAddr =
        reinterpret_cast<uint64_t>(__builtin_thread_pointer()) + static_cast<uint64_t>(__rseq_offset);
    // glibc reports __rseq_size 20 but registered 32 bytes: the kernel says EBUSY only
    // for the exact registration.
    s->kernel.rseqLen =
        syscall(SYS_rseq, s->kernel.rseqAddr, 32, 0, RSEQ_SIG) == -1 && errno == EBUSY ? 32 : __rseq_size;
    s->kernel.rseqSig = RSEQ_SIG;
  }
  stack_t ss{};
  sigaltstack(nullptr, &ss);
  s->kernel.altStackSp = reinterpret_cast<uint64_t>(ss.ss_sp);
  s->kernel.altStackSize = ss.ss_size;
  s->kernel.altStackFlags = ss.ss_flags;
  static char status[8192];  // each thread in turn, never concurrently
  readFile("/proc/thread-self/status", status, sizeof(status));
  s->pending = statusMask(status, "\nSigPnd:\t");
  if (s == &g_saved[0]) g_processPending = statusMask(status, "\nShdPnd:\t");
}

// ---- building the image and the plan -------------------------------------------------

constexpr uint32_t kMaxRegions = 512, kMaxPages = 16384;
unsigned long g_shareInodes[64];  // share group i + 1 is the object with inode g_shareInodes[i]
uint32_t g_shareCount = 0;
plan::Region g_regions[kMaxRegions];
plan::Pages g_pages[kMaxPages];
uint32_t g_regionCount = 0, g_pageCount = 0;
char g_strings[64 * 1024];
uint64_t g_stringsLen = 0;
char g_maps[256 * 1024];
alignas(8) char g_planBuf[1 << 20];
int g_imageFd = -1;
uint64_t g_imageOff = 0;

uint32_t addString(const char* s) {
  size_t n = strlen(s) + 1;
  uint32_t at = static_cast<uint32_t>(g_stringsLen);
  memcpy(g_strings + g_stringsLen, s, n);
  g_stringsLen += n;
  return at;
}

[[noreturn]] void dumpFail(const char* what) {
  say("dump failed: ");
  say(what);
  say("\n");
  _exit(2);
}

// Saves [start, end) of region `ri` into the image, one run per stretch of pages that
// `want` says to save.
void savePages(uint32_t ri, uint64_t start, uint64_t end, bool onlyResident) {
  static unsigned char vec[1 << 18];
  uint64_t npages = (end - start) / kPage;
  if (onlyResident) {
    if (npages > sizeof(vec) || mincore(reinterpret_cast<void*>(start), end - start, vec) != 0) dumpFail("mincore");
  } else {
    memset(vec, 1, npages > sizeof(vec) ? sizeof(vec) : npages);
    if (npages > sizeof(vec)) dumpFail("region too large");
  }
  uint64_t i = 0;
  while (i < npages) {
    if (!(vec[i] & 1)) {
      ++i;
      continue;
    }
    uint64_t j = i;
    while (j < npages && (vec[j] & 1)) ++j;
    uint64_t addr = start + i * kPage, len = (j - i) * kPage;
    if (pwrite(g_imageFd, reinterpret_cast<void*>(addr), len, static_cast<off_t>(g_imageOff)) != static_cast<ssize_t>(len)) {
      dumpFail("writing the image");
    }
    if (g_pageCount == kMaxPages) dumpFail("too many page runs");
    g_pages[g_pageCount++] = plan::Pages{addr, len, g_imageOff, ri, plan::kPagesCopy};
    g_imageOff += len;
    i = j;
  }
}

void dumpMemory() {
  ssize_t n = readFile("/proc/self/maps", g_maps, sizeof(g_maps));
  if (n <= 0) dumpFail("reading maps");
  char* line = g_maps;
  while (*line != '\0') {
    char* eol = strchr(line, '\n');
    if (eol) *eol = '\0';
    unsigned long start, end, offset, inode;
    char perms[8], dev[16];
    int pathAt = 0;
    if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %n", &start, &end, perms, &offset, dev, &inode, &pathAt) < 6) {
      dumpFail("parsing maps");
    }
    const char* path = pathAt > 0 ? line + pathAt : "";
    line = eol ? eol + 1 : line + strlen(line);
    if (strcmp(path, "[vsyscall]") == 0) continue;
    if (g_regionCount == kMaxRegions) dumpFail("too many regions");
    plan::Region r{};
    r.start = start;
    r.end = end;
    r.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) | (perms[2] == 'x' ? PROT_EXEC : 0);
    r.mapFlags = perms[3] == 's' ? MAP_SHARED : MAP_PRIVATE;
    r.path = plan::kNoString;
    r.source = plan::kSourceZero;
    bool file = false;
    if (strcmp(path, "[vdso]") == 0) r.kind = plan::kKindVdso;
    else if (strcmp(path, "[vvar]") == 0) r.kind = plan::kKindVvar;
    else if (strcmp(path, "[vvar_vclock]") == 0) r.kind = plan::kKindVvarVclock;
    else if (strcmp(path, "[heap]") == 0) r.kind = plan::kKindHeap;
    else if (strcmp(path, "[stack]") == 0) {
      r.kind = plan::kKindStack;
      r.mapFlags |= MAP_GROWSDOWN;
    } else if (path[0] == '/' && inode != 0 && strstr(path, " (deleted)") == nullptr) {
      file = true;
      r.kind = plan::kKindFile;
      r.source = plan::kSourceFile;
      r.path = addString(path);
      r.fileOffset = offset;
    } else if (perms[3] == 's') {
      // Shared memory (anonymous: "/dev/zero (deleted)", or a memfd): views of one
      // object share a group, keyed by the object's inode; fileOffset is the view's
      // offset in it.
      r.kind = plan::kKindMemfd;
      if (path[0] != '\0') r.path = addString(path);
      uint32_t group = 0;
      for (uint32_t i = 0; i < g_shareCount; ++i) {
        if (g_shareInodes[i] == inode) group = i + 1;
      }
      if (group == 0) {
        g_shareInodes[g_shareCount++] = inode;
        group = g_shareCount;
      }
      r.reserved = group;
      r.fileOffset = offset;
    } else {
      r.kind = plan::kKindAnonymous;
    }
    const uint32_t ri = g_regionCount;
    g_regions[g_regionCount++] = r;
    const bool vdsoKind = r.kind == plan::kKindVdso || r.kind == plan::kKindVvar || r.kind == plan::kKindVvarVclock;
    if (vdsoKind || !(r.prot & PROT_READ)) continue;
    if (file) {
      // Code is mapped from the file again; everything else of a private file mapping
      // (relocated data, RELRO, modified pages) is saved. Shared mappings are the file.
      if ((r.mapFlags & MAP_SHARED) || (r.prot & PROT_EXEC)) continue;
      savePages(ri, start, end, false);
    } else {
      savePages(ri, start, end, true);
    }
  }
}

uint64_t align8(uint64_t v) { return (v + 7) & ~7ull; }

void buildPlan(const char* imagePath, const char* planPath) {
  plan::Header h{};
  h.magic = plan::kMagic;
  h.version = plan::kVersion;
  h.headerSize = sizeof(plan::Header);
  h.imagePath = addString(imagePath);
  h.regionCount = g_regionCount;
  h.pagesCount = g_pageCount;
  h.threadCount = 2;

  // Process state.
  static char stat[4096];
  readFile("/proc/self/stat", stat, sizeof(stat));
  const char* p = strrchr(stat, ')');
  if (p == nullptr) dumpFail("parsing /proc/self/stat");
  uint64_t field[64] = {};
  int f = 3;  // the field after ") " is field 3 (state)
  p += 2;
  while (*p != '\0' && f < 64) {
    field[f] = strtoull(p, nullptr, 10);
    while (*p != '\0' && *p != ' ') ++p;
    while (*p == ' ') ++p;
    ++f;
  }
  h.flags = plan::kPlanHasMmLayout;
  h.mm.startCode = field[26];
  h.mm.endCode = field[27];
  h.mm.startStack = field[28];
  h.mm.startData = field[45];
  h.mm.endData = field[46];
  h.mm.startBrk = field[47];
  h.mm.argStart = field[48];
  h.mm.argEnd = field[49];
  h.mm.envStart = field[50];
  h.mm.envEnd = field[51];
  h.mm.brk = g_brk;
  h.mm.auxvLen = static_cast<uint64_t>(g_auxvLen);

  plan::SigAction sa[64];
  for (int i = 0; i < 64; ++i) {
    if (syscall(SYS_rt_sigaction, i + 1, nullptr, &sa[i], 8) != 0) memset(&sa[i], 0, sizeof(sa[i]));
  }
  h.sigactionCount = 64;
  plan::Fd fds[2] = {{10, plan::kFdCloexec}, {11, 0}};
  h.fdCount = 2;
  itimerval it{};
  getitimer(ITIMER_REAL, &it);
  h.itimerValueNs = it.it_value.tv_sec * 1000000000ll + it.it_value.tv_usec * 1000ll;
  h.itimerIntervalNs = it.it_interval.tv_sec * 1000000000ll + it.it_interval.tv_usec * 1000ll;
  h.resumeInfoAddr = reinterpret_cast<uint64_t>(&g_resume);
  h.processPending = g_processPending;

  plan::Thread th[2]{};
  for (int i = 0; i < 2; ++i) {
    const Saved& s = g_saved[i];
    th[i].vtid = s.tid;
    th[i].flags = i == 0 ? plan::kThreadMain : 0;
    th[i].sigframeAddr = s.ucontext;
    th[i].kernel = s.kernel;
    th[i].pendingMask = s.pending;
  }

  h.regions = sizeof(plan::Header);
  h.pages = h.regions + g_regionCount * sizeof(plan::Region);
  h.threads = h.pages + g_pageCount * sizeof(plan::Pages);
  h.sigactions = h.threads + 2 * sizeof(plan::Thread);
  h.fds = h.sigactions + 64 * sizeof(plan::SigAction);
  h.strings = h.fds + 2 * sizeof(plan::Fd);
  h.stringsSize = g_stringsLen;
  h.blob = align8(h.strings + h.stringsSize);
  h.mm.auxv = 0;
  const uint64_t frameAt = align8(static_cast<uint64_t>(g_auxvLen) + 8) & ~15ull;
  th[1].sigframe = frameAt;
  th[1].sigframeLen = g_workerFrameLen;
  h.blobSize = frameAt + g_workerFrameLen;
  h.totalSize = align8(h.blob + h.blobSize);
  if (h.totalSize > sizeof(g_planBuf)) dumpFail("plan too big");
  char* b = g_planBuf;
  memset(b, 0, h.totalSize);
  memcpy(b, &h, sizeof(h));
  memcpy(b + h.regions, g_regions, g_regionCount * sizeof(plan::Region));
  memcpy(b + h.pages, g_pages, g_pageCount * sizeof(plan::Pages));
  memcpy(b + h.threads, th, sizeof(th));
  memcpy(b + h.sigactions, sa, sizeof(sa));
  memcpy(b + h.fds, fds, sizeof(fds));
  memcpy(b + h.strings, g_strings, g_stringsLen);
  memcpy(b + h.blob, g_auxv, static_cast<size_t>(g_auxvLen));
  memcpy(b + h.blob + frameAt, g_workerFrame, g_workerFrameLen);
  if (const char* problem = plan::validate(b, h.totalSize)) dumpFail(problem);
  int fd = open(planPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, b, h.totalSize) != static_cast<ssize_t>(h.totalSize)) dumpFail("writing the plan");
  close(fd);
}

void checkpointHandler(int, siginfo_t*, void* uc) {
  if (gettidRaw() != g_origPid) {
    // The worker: record, then stay parked; the image has it here. Restored, it returns
    // to where the signal interrupted it, not into this handler.
    saveThread(&g_saved[1], uc);
    const auto* u = static_cast<const ucontext_t*>(uc);
    const auto frame = reinterpret_cast<uint64_t>(uc) - 8;
    uint64_t end = reinterpret_cast<uint64_t>(uc) + sizeof(ucontext_t);
    const auto fp = reinterpret_cast<uint64_t>(u->uc_mcontext.fpregs);
    if (fp > frame) {
      const uint32_t* sw = reinterpret_cast<const uint32_t*>(fp + 464);  // struct _fpx_sw_bytes
      end = fp + (sw[0] == 0x46505853u ? sw[1] : 512);                   // FP_XSTATE_MAGIC1, extended_size
    }
    if (end - frame <= sizeof(g_workerFrame)) {
      g_workerFrameLen = end - frame;
      memcpy(g_workerFrame, reinterpret_cast<const void*>(frame), g_workerFrameLen);
      uint64_t* mask = reinterpret_cast<uint64_t*>(g_workerFrame + 8 + offsetof(ucontext_t, uc_sigmask));
      *mask |= 1ull << (SIGHUP - 1);
    }
    g_parked.store(1);
    for (;;) syscall(SYS_futex, &g_parkWord, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
  }
  saveThread(&g_saved[0], uc);
  char imagePath[600], planPath[600];
  snprintf(imagePath, sizeof(imagePath), "%s/image", g_dir);
  snprintf(planPath, sizeof(planPath), "%s/plan", g_dir);
  g_imageFd = open(imagePath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (g_imageFd < 0) dumpFail("creating the image");
  g_brk = static_cast<uint64_t>(syscall(SYS_brk, 0));
  dumpMemory();
  buildPlan(imagePath, planPath);
  close(g_imageFd);
  say("DUMPED\n");
  _exit(0);
}

// ---- the application -----------------------------------------------------------------

void onUsr1(int) {
  g_usr1Tid.store(gettidRaw());
  g_usr1Count.fetch_add(1);
}
void onUsr2(int, siginfo_t* si, void*) {
  g_usr2Code.store(si->si_code);
  g_usr2Pid.store(si->si_pid);
  g_usr2Count.fetch_add(1);
}
void onWinch(int, siginfo_t* si, void*) {
  g_winchCode.store(si->si_code);
  g_winchPid.store(si->si_pid);
  g_winchCount.fetch_add(1);
}
void onAlarm(int) {}

void* worker(void*) {
  t_value = 777;
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGWINCH);
  sigaddset(&block, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &block, nullptr);
  while (!g_stop.load()) {
    g_workerTidNow.store(gettidRaw());
    if (g_resume.magic == plan::kResumeMagic && !g_workerChecked.load()) {
      long r = syscall(SYS_rseq, reinterpret_cast<char*>(__builtin_thread_pointer()) + __rseq_offset, 32, 0, RSEQ_SIG);
      g_workerRseqErrno.store(r == -1 ? errno : 0);
      void* head = nullptr;
      size_t len = 0;
      syscall(SYS_get_robust_list, 0, &head, &len);
      g_workerRobust.store(reinterpret_cast<uint64_t>(head));
      sigset_t now;
      pthread_sigmask(SIG_BLOCK, nullptr, &now);
      g_workerSighupBlocked.store(sigismember(&now, SIGHUP));
      g_workerChecked.store(1);
    }
    g_progress.fetch_add(1);
    usleep(1000);
  }
  return reinterpret_cast<void*>(static_cast<intptr_t>(t_value));
}

int g_failures = 0;
void check(bool ok, const char* what) {
  printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++g_failures;
}

bool mapsLineHas(uint64_t addr, const char* needle) {
  static char maps[256 * 1024];
  readFile("/proc/self/maps", maps, sizeof(maps));
  char prefix[32];
  snprintf(prefix, sizeof(prefix), "%lx-", static_cast<unsigned long>(addr));
  for (char* line = maps; line && *line; ) {
    char* eol = strchr(line, '\n');
    if (eol) *eol = '\0';
    if (strncmp(line, prefix, strlen(prefix)) == 0) return strstr(line, needle) != nullptr;
    line = eol ? eol + 1 : nullptr;
  }
  return false;
}

// VmFlags of the mapping named `name` in /proc/self/smaps.
bool smapsFlagsHave(const char* name, const char* flag) {
  static char smaps[1 << 20];
  readFile("/proc/self/smaps", smaps, sizeof(smaps));
  const char* at = strstr(smaps, name);
  if (at == nullptr) return false;
  const char* flags = strstr(at, "VmFlags:");
  if (flags == nullptr) return false;
  const char* eol = strchr(flags, '\n');
  char line[256];
  snprintf(line, sizeof(line), "%.*s ", static_cast<int>(eol ? eol - flags : 200), flags);
  char want[8];
  snprintf(want, sizeof(want), " %s ", flag);
  return strstr(line, want) != nullptr;
}

__attribute__((noinline)) int deepStack(int depth) {
  volatile char buf[64 * 1024];
  buf[0] = static_cast<char>(depth);
  buf[sizeof(buf) - 1] = 1;
  if (depth == 0) return buf[0];
  return deepStack(depth - 1) + buf[0] + buf[sizeof(buf) - 1];
}

int verifyRestored() {
  const uint64_t brkNow = static_cast<uint64_t>(syscall(SYS_brk, 0));  // before stdio allocates
  void* more = sbrk(1 << 20);
  const uint64_t brkGrown = static_cast<uint64_t>(syscall(SYS_brk, 0));
  const int64_t nowNs = [] {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ll + ts.tv_nsec;
  }();
  setvbuf(stdout, nullptr, _IOLBF, 0);
  printf("restored: pid %d (was %d)\n", static_cast<int>(getpid()), static_cast<int>(g_origPid));
  char path[600], buf[64];
  snprintf(path, sizeof(path), "%s/exec_ns", g_dir);
  if (readFile(path, buf, sizeof(buf)) > 0) {
    const int64_t execNs = strtoll(buf, nullptr, 10);
    printf("exec of mig-restore to application code: %.3f ms (resume info written %.3f ms after exec)\n",
           (nowNs - execNs) / 1e6, (g_resume.monotonicNs - execNs) / 1e6);
  }

  check(g_resume.magic == plan::kResumeMagic, "ResumeInfo magic written");
  check(g_resume.realPid == static_cast<pid_t>(syscall(SYS_getpid)), "ResumeInfo realPid is the new pid");
  check(g_resume.realPid != g_origPid, "the new pid differs from the checkpointed one");
  check(g_resume.monotonicNs > 0 && g_resume.monotonicNs <= nowNs, "ResumeInfo monotonicNs is plausible");
  check(g_counter == 12345, "global data restored");
  bool bigOk = true;
  for (size_t i = 0; i < kBigSize; i += 512) bigOk = bigOk && g_big[i] == static_cast<char>(i / 512 * 7 + 3);
  check(bigOk, "4 MiB malloc buffer restored (mapped from the image)");
  check(strcmp(g_small, "small heap object") == 0, "brk heap object restored");
  check(strcmp(g_shared, "shared anonymous") == 0 && strcmp(g_shared + kPage, "second page") == 0,
        "shared anonymous memory restored");
  check(mapsLineHas(reinterpret_cast<uint64_t>(g_shared), " rw-s "), "shared anonymous memory is still shared");
  strcpy(g_shared + 100, "written through view 1");
  check(strcmp(g_shared2, "shared anonymous") == 0 && strcmp(g_shared2 + 100, "written through view 1") == 0,
        "two views of shared anonymous memory are still one object");
  strcpy(g_memfd2 + 100, "written through memfd view 2");
  check(strcmp(g_memfd2, "memfd page 1") == 0 && strcmp(g_memfd1 + kPage + 100, "written through memfd view 2") == 0,
        "two views of a memfd at different offsets are still one object");
  check(mapsLineHas(reinterpret_cast<uint64_t>(g_memfd1), "/memfd:mig-test (deleted)"), "the memfd keeps its name");
  check(memcmp(g_filePriv, "MODIFIED", 8) == 0 && g_filePriv[kPage] == 'B',
        "private file mapping: modified page from the image, clean page from the file");

  check(smapsFlagsHave("[stack]", "gd"), "[stack] is still a growsdown mapping");
  check(deepStack(32) == 32 * 33 / 2 + 32, "the main stack grows by 2 MiB below its restored size");

  timespec ts{};
  check(clock_gettime(CLOCK_MONOTONIC, &ts) == 0 && ts.tv_sec > 0, "clock_gettime through the vDSO works");
  check(getauxval(AT_SYSINFO_EHDR) == g_vdso && mapsLineHas(g_vdso, "[vdso]"), "[vdso] is at the checkpointed address");

  check(brkNow == g_brk, "brk restored by PR_SET_MM_MAP");
  check(more != reinterpret_cast<void*>(-1) && brkGrown == g_brk + (1 << 20), "brk can grow from the restored heap");
  static char cmd[4096], aux[1024];
  ssize_t cl = readFile("/proc/self/cmdline", cmd, sizeof(cmd));
  check(cl == g_cmdlineLen && memcmp(cmd, g_cmdline, static_cast<size_t>(cl)) == 0,
        "/proc/self/cmdline shows the checkpointed arguments");
  ssize_t al = readFile("/proc/self/auxv", aux, sizeof(aux));
  check(al == g_auxvLen && memcmp(aux, g_auxv, static_cast<size_t>(al)) == 0, "/proc/self/auxv restored");

  static char comm[64];
  readFile("/proc/self/comm", comm, sizeof(comm));
  const char* arg0 = strrchr(g_cmdline, '/') ? strrchr(g_cmdline, '/') + 1 : g_cmdline;
  char want[32];
  snprintf(want, sizeof(want), "%.15s\n", arg0);
  check(strcmp(comm, want) == 0, "the process is named after its argv[0], not mig-restore");
  check(fcntl(10, F_GETFD) == FD_CLOEXEC, "fd 10 is close-on-exec");
  check(fcntl(11, F_GETFD) == 0, "fd 11 is not close-on-exec");
  check(fcntl(20, F_GETFD) == -1 && errno == EBADF && fcntl(21, F_GETFD) == -1 && errno == EBADF,
        "the plan and image fds are closed");
  // Grown by mig-restore while it was alone in the table, for the shim's fds just under
  // min(RLIMIT_NOFILE, 4096): grown later, with threads sharing it, the kernel would
  // wait for an RCU grace period inside the freeze.
  static char status[4096];
  readFile("/proc/self/status", status, sizeof(status));
  const char* fdSize = strstr(status, "FDSize:");
  struct rlimit nofile {};
  getrlimit(RLIMIT_NOFILE, &nofile);
  const rlim_t band = nofile.rlim_cur < 4096 ? nofile.rlim_cur : 4096;
  check(fdSize != nullptr && strtoull(fdSize + 7, nullptr, 10) >= band, "the fd table holds the shim's fds already");

  struct sigaction sa {};
  sigaction(SIGUSR1, nullptr, &sa);
  check(sa.sa_handler == onUsr1, "SIGUSR1 handler restored");
  itimerval it{};
  getitimer(ITIMER_REAL, &it);
  check(it.it_value.tv_sec > 0 && it.it_value.tv_sec <= 100, "ITIMER_REAL still running");

  const Saved& m = g_saved[0];
  void* head = nullptr;
  size_t len = 0;
  syscall(SYS_get_robust_list, 0, &head, &len);
  check(reinterpret_cast<uint64_t>(head) == m.kernel.robustList && len == m.kernel.robustListLen,
        "main robust list re-registered");
  long rr = syscall(SYS_rseq, m.kernel.rseqAddr, 32, 0, RSEQ_SIG);
  check(m.kernel.rseqAddr != 0 && rr == -1 && errno == EBUSY, "main rseq area re-registered (EBUSY on a second try)");
  auto* area = reinterpret_cast<volatile struct rseq*>(m.kernel.rseqAddr);
  check(static_cast<int>(area->cpu_id) == sched_getcpu(), "rseq cpu_id is kept up to date by the kernel");
  stack_t ss{};
  sigaltstack(nullptr, &ss);
  check(reinterpret_cast<uint64_t>(ss.ss_sp) == m.kernel.altStackSp && ss.ss_size == m.kernel.altStackSize,
        "sigaltstack restored");

  sigset_t pend;
  sigpending(&pend);
  check(sigismember(&pend, SIGUSR2) == 1, "thread-pending SIGUSR2 still pending");
  check(sigismember(&pend, SIGWINCH) == 1, "process-pending SIGWINCH still pending");
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, SIGUSR2);
  sigaddset(&unblock, SIGWINCH);
  pthread_sigmask(SIG_UNBLOCK, &unblock, nullptr);
  check(g_usr2Count.load() == 1 && g_winchCount.load() == 1, "pending signals delivered once unblocked");
  check(g_usr2Code.load() == SI_TKILL && g_usr2Pid.load() == g_origPid,
        "thread-pending signal comes as from tgkill by the process (si_pid = its virtual pid)");
  check(g_winchCode.load() == SI_USER && g_winchPid.load() == g_origPid,
        "process-pending signal comes as from kill by the process (si_pid = its virtual pid)");

  raise(SIGUSR1);  // glibc: tgkill(getpid(), THREAD_SELF->tid): needs the main tid field updated
  check(g_usr1Count.load() == 1 && g_usr1Tid.load() == gettidRaw(), "raise() reaches the main thread (tid field)");

  long before = g_progress.load();
  for (int i = 0; i < 2000 && (g_progress.load() < before + 3 || !g_workerChecked.load()); ++i) usleep(1000);
  check(g_progress.load() >= before + 3, "worker thread runs again");
  check(g_workerTidNow.load() != g_origWorkerTid, "worker has a new kernel tid");
  check(g_workerRseqErrno.load() == EBUSY, "worker rseq area re-registered");
  check(g_workerRobust.load() == g_saved[1].kernel.robustList, "worker robust list re-registered");
  check(g_workerFrameLen > 0 && g_workerSighupBlocked.load() == 1,
        "worker resumed from the signal frame shipped in the plan (sigframeLen > 0)");
  pthread_kill(g_worker, SIGUSR1);  // uses the worker's struct pthread tid (CLONE_PARENT_SETTID)
  for (int i = 0; i < 2000 && g_usr1Count.load() < 2; ++i) usleep(1000);
  check(g_usr1Count.load() == 2 && g_usr1Tid.load() == g_workerTidNow.load(), "pthread_kill reaches the worker");
  g_stop.store(1);
  void* ret = nullptr;
  check(pthread_join(g_worker, &ret) == 0 && reinterpret_cast<intptr_t>(ret) == 777,
        "pthread_join returns the worker's TLS value (CLONE_CHILD_CLEARTID)");

  if (getenv("MIG_TEST_SHOW_MAPS")) {
    static char maps[256 * 1024];
    readFile("/proc/self/maps", maps, sizeof(maps));
    fputs(maps, stdout);
  }
  puts(g_failures == 0 ? "RESTORED OK" : "RESTORED WITH FAILURES");
  return g_failures == 0 ? 0 : 1;
}

int dump(const char* dir) {
  snprintf(g_dir, sizeof(g_dir), "%s", dir);
  g_origPid = getpid();
  g_counter = 12345;
  g_big = static_cast<char*>(malloc(kBigSize));
  for (size_t i = 0; i < kBigSize; i += 512) g_big[i] = static_cast<char>(i / 512 * 7 + 3);
  g_small = static_cast<char*>(malloc(64));
  strcpy(g_small, "small heap object");
  g_shared = static_cast<char*>(mmap(nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  strcpy(g_shared, "shared anonymous");
  strcpy(g_shared + kPage, "second page");
  g_shared2 = static_cast<char*>(mremap(g_shared, 0, 2 * kPage, MREMAP_MAYMOVE));
  int mfd = static_cast<int>(syscall(SYS_memfd_create, "mig-test", 0));
  if (g_shared2 == MAP_FAILED || mfd < 0 || ftruncate(mfd, 3 * kPage) != 0) return 2;
  g_memfd1 = static_cast<char*>(mmap(nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0));
  g_memfd2 = static_cast<char*>(mmap(nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, kPage));
  close(mfd);
  if (g_memfd1 == MAP_FAILED || g_memfd2 == MAP_FAILED) return 2;
  strcpy(g_memfd1 + kPage, "memfd page 1");
  char path[600];
  snprintf(path, sizeof(path), "%s/data", dir);
  int dfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  static char page[2 * kPage];
  memset(page, 'A', kPage);
  memset(page + kPage, 'B', kPage);
  if (dfd < 0 || write(dfd, page, sizeof(page)) != static_cast<ssize_t>(sizeof(page))) return 2;
  g_filePriv = static_cast<char*>(mmap(nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, dfd, 0));
  close(dfd);
  memcpy(g_filePriv, "MODIFIED", 8);
  g_cmdlineLen = readFile("/proc/self/cmdline", g_cmdline, sizeof(g_cmdline));
  g_auxvLen = readFile("/proc/self/auxv", g_auxv, sizeof(g_auxv));
  g_vdso = getauxval(AT_SYSINFO_EHDR);

  struct sigaction sa {};
  sa.sa_handler = onUsr1;
  sigaction(SIGUSR1, &sa, nullptr);
  sa.sa_flags = SA_SIGINFO;
  sa.sa_sigaction = onUsr2;
  sigaction(SIGUSR2, &sa, nullptr);
  sa.sa_sigaction = onWinch;
  sigaction(SIGWINCH, &sa, nullptr);
  sa.sa_flags = 0;
  sa.sa_handler = onAlarm;
  sigaction(SIGALRM, &sa, nullptr);
  struct sigaction ck {};
  ck.sa_sigaction = checkpointHandler;
  ck.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&ck.sa_mask);
  sigaction(kCkptSig, &ck, nullptr);

  // Both threads block SIGWINCH, so a process-directed one stays pending.
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  sigaddset(&block, SIGWINCH);
  pthread_sigmask(SIG_BLOCK, &block, nullptr);
  if (pthread_create(&g_worker, nullptr, worker, nullptr) != 0) return 2;
  while (g_progress.load() == 0) usleep(1000);
  g_origWorkerTid = g_workerTidNow.load();

  syscall(SYS_tgkill, g_origPid, gettidRaw(), SIGUSR2);
  kill(g_origPid, SIGWINCH);
  itimerval it{};
  it.it_value.tv_sec = 100;
  setitimer(ITIMER_REAL, &it, nullptr);
  stack_t ss{};
  ss.ss_sp = g_altStack;
  ss.ss_size = sizeof(g_altStack);
  sigaltstack(&ss, nullptr);
  int n10 = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int n11 = open("/dev/null", O_RDONLY);
  if (dup2(n10, 10) < 0 || dup3(n11, 11, 0) < 0) return 2;
  fcntl(10, F_SETFD, FD_CLOEXEC);
  fflush(stdout);

  syscall(SYS_tgkill, g_origPid, g_origWorkerTid, kCkptSig);
  while (g_parked.load() == 0) usleep(1000);
  // The checkpoint: the handler writes the image and exits. A restored process
  // continues right after this call.
  syscall(SYS_tgkill, g_origPid, gettidRaw(), kCkptSig);
  return verifyRestored();
}

int restore(const char* dir, const char* restorer) {
  char path[600];
  snprintf(path, sizeof(path), "%s/plan", dir);
  int pfd = open(path, O_RDONLY);
  if (pfd < 0) {
    perror("plan");
    return 2;
  }
  int mfd = static_cast<int>(syscall(SYS_memfd_create, "mig-plan", 0));
  static char buf[1 << 20];
  ssize_t n;
  while ((n = read(pfd, buf, sizeof(buf))) > 0) {
    if (write(mfd, buf, static_cast<size_t>(n)) != n) return 2;
  }
  close(pfd);
  snprintf(path, sizeof(path), "%s/image", dir);
  int ifd = open(path, O_RDONLY);
  if (mfd < 0 || ifd < 0) {
    perror("image");
    return 2;
  }
  // As migctl restart would: the application's fds at their numbers (with the wrong
  // close-on-exec flags, which the restorer fixes), the plan and image at free numbers.
  int n10 = open("/dev/null", O_RDONLY);
  int n11 = open("/dev/null", O_RDONLY);
  if (dup2(mfd, 20) < 0 || dup2(ifd, 21) < 0 || dup2(n10, 10) < 0 || dup2(n11, 11) < 0) return 2;
  close(mfd);
  close(ifd);
  close(n10);
  close(n11);
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  snprintf(path, sizeof(path), "%s/exec_ns", dir);
  FILE* f = fopen(path, "w");
  if (f) {
    fprintf(f, "%lld\n", ts.tv_sec * 1000000000ll + ts.tv_nsec);
    fclose(f);
  }
  char* const argv[] = {const_cast<char*>("mig-restore"), const_cast<char*>("20"), const_cast<char*>("21"), nullptr};
  execv(restorer, argv);
  perror("exec");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "dump") == 0) return dump(argv[2]);
  if (argc == 4 && strcmp(argv[1], "restore") == 0) return restore(argv[2], argv[3]);
  fprintf(stderr, "usage: %s dump DIR | restore DIR RESTORER\n", argv[0]);
  return 2;
}
