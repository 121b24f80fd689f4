// The Linux ABI constants and structs the freestanding restorer needs, spelled out
// here because it includes no libc headers. The unit tests compare every value with
// the system headers.
#pragma once

#include <stdint.h>

namespace mig::restore::abi {

inline constexpr int kProtRead = 1;
inline constexpr int kProtWrite = 2;
inline constexpr int kProtExec = 4;

inline constexpr int kMapShared = 0x01;
inline constexpr int kShmRdonly = 010000;  // shmat flags (linux/shm.h)
inline constexpr int kShmRemap = 040000;
inline constexpr int kShmExec = 0100000;
inline constexpr int kIpcRmid = 0;
inline constexpr int kMapPrivate = 0x02;
inline constexpr int kMapFixed = 0x10;
inline constexpr int kMapAnonymous = 0x20;
inline constexpr int kMapGrowsdown = 0x0100;
inline constexpr int kMapFixedNoreplace = 0x100000;

inline constexpr int kMremapMaymove = 1;
inline constexpr int kMremapFixed = 2;
inline constexpr int kMadvDontfork = 10;
inline constexpr int kMadvPopulateWrite = 23;  // Linux 5.14

inline constexpr int kOReadOnly = 0;
inline constexpr int kOWriteOnly = 1;
inline constexpr int kOReadWrite = 2;
inline constexpr int kOAccMode = 3;
inline constexpr int kOCloexec = 0x80000;
inline constexpr int kAtFdcwd = -100;

inline constexpr int kFGetfd = 1;
inline constexpr int kFSetfd = 2;
inline constexpr int kFGetfl = 3;
inline constexpr int kFDupfd = 0;
inline constexpr int kFdCloexec = 1;

inline constexpr int kSigKill = 9;
inline constexpr int kSigStop = 19;
inline constexpr int kSigChld = 17;
inline constexpr int kWall = 0x40000000;  // __WALL
inline constexpr int kSigSetmask = 2;
inline constexpr int kSiUser = 0;    // SI_USER: sent by kill()
inline constexpr int kSiTkill = -6;  // SI_TKILL: sent by tgkill() (raise, pthread_kill)
inline constexpr int kSsDisable = 2;
inline constexpr uint32_t kSsAutodisarm = 1u << 31;

inline constexpr int kPrSetName = 15;
inline constexpr int kPrSetMm = 35;
inline constexpr int kPrSetMmMap = 14;
inline constexpr int kPrTimerCreateRestoreIds = 77;  // Linux >= 6.17: timer_create takes the id
inline constexpr int kPrTimerCreateRestoreIdsOff = 0;
inline constexpr int kPrTimerCreateRestoreIdsOn = 1;
inline constexpr int kTimerAbstime = 1;
inline constexpr int kSigevThreadId = 4;
inline constexpr int kArchSetGs = 0x1001;
inline constexpr int kArchSetFs = 0x1002;

inline constexpr int kFutexWait = 0;
inline constexpr int kFutexWake = 1;
inline constexpr int kFutexPrivate = 128;

inline constexpr int kClockRealtime = 0;
inline constexpr int kClockMonotonic = 1;
inline constexpr int kItimerReal = 0;
inline constexpr int kRlimitStack = 3;
inline constexpr int kRlimitNofile = 7;
inline constexpr uint64_t kRlimInfinity = ~0ull;

inline constexpr uint64_t kCloneVm = 0x100;
inline constexpr uint64_t kCloneFs = 0x200;
inline constexpr uint64_t kCloneFiles = 0x400;
inline constexpr uint64_t kCloneSighand = 0x800;
inline constexpr uint64_t kCloneThread = 0x10000;
inline constexpr uint64_t kCloneSysvsem = 0x40000;
inline constexpr uint64_t kCloneSettls = 0x80000;
inline constexpr uint64_t kCloneParentSettid = 0x100000;
inline constexpr uint64_t kCloneChildCleartid = 0x200000;

inline constexpr uint64_t kAtNull = 0;
inline constexpr uint64_t kAtSysinfoEhdr = 33;

inline constexpr unsigned kMfdCloexec = 1;

inline constexpr uint32_t kSIfmt = 0170000;
inline constexpr uint32_t kSIfreg = 0100000;

inline constexpr long kEINTR = 4;
inline constexpr long kEAGAIN = 11;
inline constexpr long kEBUSY = 16;
inline constexpr long kEINVAL = 22;

inline constexpr uint32_t kRseqMinLen = 32;  // ORIG_RSEQ_SIZE: the kernel refuses shorter areas
inline constexpr uint32_t kRseqCpuIdUninitialized = 0xffffffffu;  // (uint32_t)-1
inline constexpr int kRseqFlagUnregister = 1;
inline constexpr uint32_t kRobustListHeadLen = 24;  // sizeof(struct robust_list_head): all set_robust_list takes

// userfaultfd (linux/userfaultfd.h), for lazy pages.
inline constexpr int kONonblock = 0x800;
inline constexpr uint64_t kUffdApi = 0xaa;
inline constexpr uint64_t kUffdFeatureEventFork = 1u << 1;
inline constexpr uint64_t kUffdFeatureEventRemap = 1u << 2;
inline constexpr uint64_t kUffdFeatureEventRemove = 1u << 3;
inline constexpr uint64_t kUffdFeatureEventUnmap = 1u << 6;
inline constexpr uint64_t kUffdFeatureThreadId = 1u << 8;
inline constexpr uint64_t kUffdioRegisterModeMissing = 1;
// _IOWR(0xAA, nr, size): dir 3 << 30 | size << 16 | 0xAA << 8 | nr.
inline constexpr unsigned long kUffdioApi = (3ul << 30) | (24ul << 16) | (0xaaul << 8) | 0x3f;
inline constexpr unsigned long kUffdioRegister = (3ul << 30) | (32ul << 16) | (0xaaul << 8) | 0x00;

struct UffdioApi {
  uint64_t api;
  uint64_t features;
  uint64_t ioctls;
};

struct UffdioRegister {
  uint64_t start;
  uint64_t len;
  uint64_t mode;
  uint64_t ioctls;
};

// sendmsg with one fd (SCM_RIGHTS).
inline constexpr int kSolSocket = 1;
inline constexpr int kScmRights = 1;
inline constexpr int kMsgNosignal = 0x4000;

struct Iovec {
  const void* base;
  uint64_t len;
};

struct Msghdr {
  void* name;
  uint32_t nameLen;
  Iovec* iov;
  uint64_t iovLen;
  void* control;
  uint64_t controlLen;
  int32_t flags;
};

struct CmsgOneFd {  // struct cmsghdr followed by one int, padded to CMSG_SPACE(sizeof(int))
  uint64_t len;
  int32_t level;
  int32_t type;
  int32_t fd;
  int32_t pad;
};

// struct stat (x86_64): only what the restorer reads.
struct Stat {
  uint64_t dev;
  uint64_t ino;
  uint64_t nlink;
  uint32_t mode;
  uint32_t uid;
  uint32_t gid;
  uint32_t pad0;
  uint64_t rdev;
  int64_t size;
  int64_t blksize;
  int64_t blocks;
  uint64_t times[6];
  int64_t unused[3];
};
static_assert(sizeof(Stat) == 144);

struct Timespec {
  int64_t sec;
  int64_t nsec;
};

struct Timeval {
  int64_t sec;
  int64_t usec;
};

struct Itimerval {
  Timeval interval;
  Timeval value;
};

struct Itimerspec {
  Timespec interval;
  Timespec value;
};

struct Sigevent {  // the kernel's sigevent_t
  uint64_t value;
  int32_t signo;
  int32_t notify;
  int32_t tid;     // SIGEV_THREAD_ID's target
  int32_t pad[11];
};
static_assert(sizeof(Sigevent) == 64);

struct Rlimit {
  uint64_t cur;
  uint64_t max;
};

struct StackT {  // stack_t
  uint64_t sp;
  int32_t flags;
  int32_t pad;
  uint64_t size;
};
static_assert(sizeof(StackT) == 24);

struct PrctlMmMap {  // struct prctl_mm_map
  uint64_t startCode, endCode, startData, endData;
  uint64_t startBrk, brk, startStack;
  uint64_t argStart, argEnd, envStart, envEnd;
  uint64_t auxv;
  uint32_t auxvSize;
  uint32_t exeFd;
};
static_assert(sizeof(PrctlMmMap) == 104);

// siginfo_t as kill()/tgkill() fill it.
struct SigInfo {
  int32_t signo;
  int32_t errnoValue;
  int32_t code;
  int32_t pad;
  int32_t pid;
  uint32_t uid;
  uint64_t rest[13];
};
static_assert(sizeof(SigInfo) == 128);

// struct rseq field offsets.
inline constexpr uint64_t kRseqCpuIdStart = 0;
inline constexpr uint64_t kRseqCpuId = 4;
inline constexpr uint64_t kRseqCs = 8;

// ELF (64-bit): the program headers the restorer reads to find its own image.
struct ElfHeader {
  unsigned char ident[16];
  uint16_t type;
  uint16_t machine;
  uint32_t version;
  uint64_t entry;
  uint64_t phoff;
  uint64_t shoff;
  uint32_t flags;
  uint16_t ehsize;
  uint16_t phentsize;
  uint16_t phnum;
  uint16_t shentsize;
  uint16_t shnum;
  uint16_t shstrndx;
};
static_assert(sizeof(ElfHeader) == 64);

struct ElfPhdr {
  uint32_t type;
  uint32_t flags;
  uint64_t offset;
  uint64_t vaddr;
  uint64_t paddr;
  uint64_t filesz;
  uint64_t memsz;
  uint64_t align;
};
static_assert(sizeof(ElfPhdr) == 56);

inline constexpr uint32_t kPtLoad = 1;
inline constexpr uint32_t kPtTls = 7;
inline constexpr uint32_t kPfX = 1;
inline constexpr uint32_t kPfW = 2;
inline constexpr uint32_t kPfR = 4;

}  // namespace mig::restore::abi
