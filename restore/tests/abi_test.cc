// The restorer spells out the Linux ABI it uses (it includes no libc headers): every
// constant, struct layout and system call number against the system's headers.
#include "restore/arch/x86_64/syscall.h"
#include "restore/linux_abi.h"

#include <doctest/doctest.h>

#include <asm/prctl.h>
#include <cerrno>
#include <cstddef>
#include <ctime>
#include <elf.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/prctl.h>
#include <linux/rseq.h>
#include <sched.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/ioctl.h>
#include <linux/userfaultfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>

namespace mig::restore {
namespace {

namespace a = abi;

static_assert(a::kProtRead == PROT_READ && a::kProtWrite == PROT_WRITE && a::kProtExec == PROT_EXEC);
static_assert(a::kMapShared == MAP_SHARED && a::kMapPrivate == MAP_PRIVATE && a::kMapFixed == MAP_FIXED);
static_assert(a::kMapAnonymous == MAP_ANONYMOUS && a::kMapGrowsdown == MAP_GROWSDOWN);
static_assert(a::kMapFixedNoreplace == MAP_FIXED_NOREPLACE);
static_assert(a::kMremapMaymove == MREMAP_MAYMOVE && a::kMremapFixed == MREMAP_FIXED);
static_assert(a::kMadvDontfork == MADV_DONTFORK);
static_assert(a::kOReadOnly == O_RDONLY && a::kOWriteOnly == O_WRONLY && a::kOReadWrite == O_RDWR);
static_assert(a::kOAccMode == O_ACCMODE && a::kOCloexec == O_CLOEXEC && a::kAtFdcwd == AT_FDCWD);
static_assert(a::kFGetfd == F_GETFD && a::kFSetfd == F_SETFD && a::kFGetfl == F_GETFL && a::kFdCloexec == FD_CLOEXEC);
static_assert(a::kSigKill == SIGKILL && a::kSigStop == SIGSTOP && a::kSigSetmask == SIG_SETMASK);
static_assert(a::kSsDisable == SS_DISABLE && a::kSsAutodisarm == 0x80000000u);  // SS_AUTODISARM: linux/signal.h
static_assert(a::kPrSetName == PR_SET_NAME);
static_assert(a::kSiUser == SI_USER && a::kSiTkill == SI_TKILL && a::kMfdCloexec == MFD_CLOEXEC);
static_assert(sizeof(a::SigInfo) == sizeof(siginfo_t));
static_assert(offsetof(a::SigInfo, code) == offsetof(siginfo_t, si_code));
static_assert(offsetof(a::SigInfo, pid) == offsetof(siginfo_t, si_pid));
static_assert(offsetof(a::SigInfo, uid) == offsetof(siginfo_t, si_uid));
static_assert(a::kPrSetMm == PR_SET_MM && a::kPrSetMmMap == PR_SET_MM_MAP);
static_assert(a::kArchSetGs == ARCH_SET_GS && a::kArchSetFs == ARCH_SET_FS);
static_assert(a::kFutexWait == FUTEX_WAIT && a::kFutexWake == FUTEX_WAKE && a::kFutexPrivate == FUTEX_PRIVATE_FLAG);
static_assert(a::kClockMonotonic == CLOCK_MONOTONIC && a::kItimerReal == ITIMER_REAL);
static_assert(a::kRlimitStack == RLIMIT_STACK && a::kRlimInfinity == RLIM_INFINITY);
static_assert(a::kCloneVm == CLONE_VM && a::kCloneFs == CLONE_FS && a::kCloneFiles == CLONE_FILES);
static_assert(a::kCloneSighand == CLONE_SIGHAND && a::kCloneThread == CLONE_THREAD);
static_assert(a::kCloneSysvsem == CLONE_SYSVSEM && a::kCloneSettls == CLONE_SETTLS);
static_assert(a::kCloneParentSettid == CLONE_PARENT_SETTID && a::kCloneChildCleartid == CLONE_CHILD_CLEARTID);
static_assert(a::kAtNull == AT_NULL && a::kAtSysinfoEhdr == AT_SYSINFO_EHDR);
static_assert(a::kSIfmt == S_IFMT && a::kSIfreg == S_IFREG);
static_assert(a::kEINTR == EINTR && a::kEAGAIN == EAGAIN && a::kEBUSY == EBUSY && a::kEINVAL == EINVAL);
static_assert(a::kRseqCpuIdUninitialized == static_cast<uint32_t>(RSEQ_CPU_ID_UNINITIALIZED));
static_assert(a::kRseqCpuIdStart == offsetof(struct rseq, cpu_id_start));
static_assert(a::kRseqCpuId == offsetof(struct rseq, cpu_id));
static_assert(a::kRseqCs == offsetof(struct rseq, rseq_cs));
static_assert(a::kRseqMinLen == sizeof(struct rseq) || a::kRseqMinLen == 32);
static_assert(a::kRseqFlagUnregister == RSEQ_FLAG_UNREGISTER);
static_assert(a::kRobustListHeadLen == sizeof(struct robust_list_head));

static_assert(sizeof(a::Stat) == sizeof(struct stat));
static_assert(offsetof(a::Stat, mode) == offsetof(struct stat, st_mode));
static_assert(offsetof(a::Stat, size) == offsetof(struct stat, st_size));
static_assert(sizeof(a::Timespec) == sizeof(timespec) && sizeof(a::Itimerval) == sizeof(itimerval));
static_assert(offsetof(a::Itimerval, value) == offsetof(itimerval, it_value));
static_assert(sizeof(a::Rlimit) == sizeof(rlimit));
static_assert(sizeof(a::Sigevent) == sizeof(sigevent) && sizeof(a::Itimerspec) == sizeof(itimerspec));
static_assert(offsetof(a::Sigevent, signo) == offsetof(sigevent, sigev_signo));
static_assert(offsetof(a::Sigevent, notify) == offsetof(sigevent, sigev_notify));
static_assert(offsetof(a::Sigevent, tid) == offsetof(sigevent, _sigev_un._tid));
static_assert(offsetof(a::Itimerspec, value) == offsetof(itimerspec, it_value));
static_assert(a::kTimerAbstime == TIMER_ABSTIME && a::kSigevThreadId == SIGEV_THREAD_ID);
static_assert(sizeof(a::StackT) == sizeof(stack_t));
static_assert(offsetof(a::StackT, flags) == offsetof(stack_t, ss_flags));
static_assert(offsetof(a::StackT, size) == offsetof(stack_t, ss_size));
static_assert(sizeof(a::PrctlMmMap) == sizeof(prctl_mm_map));
static_assert(offsetof(a::PrctlMmMap, auxv) == offsetof(prctl_mm_map, auxv));
static_assert(offsetof(a::PrctlMmMap, exeFd) == offsetof(prctl_mm_map, exe_fd));
static_assert(offsetof(a::PrctlMmMap, brk) == offsetof(prctl_mm_map, brk));
static_assert(sizeof(a::ElfHeader) == sizeof(Elf64_Ehdr) && sizeof(a::ElfPhdr) == sizeof(Elf64_Phdr));
static_assert(offsetof(a::ElfHeader, phoff) == offsetof(Elf64_Ehdr, e_phoff));
static_assert(offsetof(a::ElfHeader, phnum) == offsetof(Elf64_Ehdr, e_phnum));
static_assert(offsetof(a::ElfPhdr, memsz) == offsetof(Elf64_Phdr, p_memsz));
static_assert(a::kPtLoad == PT_LOAD && a::kPtTls == PT_TLS && a::kPfX == PF_X && a::kPfW == PF_W && a::kPfR == PF_R);

static_assert(sys::kRead == SYS_read && sys::kWrite == SYS_write && sys::kClose == SYS_close);
static_assert(sys::kFstat == SYS_fstat && sys::kMmap == SYS_mmap && sys::kMprotect == SYS_mprotect);
static_assert(sys::kMunmap == SYS_munmap && sys::kRtSigaction == SYS_rt_sigaction);
static_assert(sys::kRtSigprocmask == SYS_rt_sigprocmask && sys::kRtSigreturn == SYS_rt_sigreturn);
static_assert(sys::kPread64 == SYS_pread64 && sys::kMremap == SYS_mremap && sys::kSetitimer == SYS_setitimer);
static_assert(sys::kMadvise == SYS_madvise);
static_assert(sys::kPreadv == SYS_preadv);
static_assert(sys::kGetpid == SYS_getpid && sys::kClone == SYS_clone && sys::kKill == SYS_kill);
static_assert(sys::kFcntl == SYS_fcntl && sys::kSigaltstack == SYS_sigaltstack && sys::kPrctl == SYS_prctl);
static_assert(sys::kArchPrctl == SYS_arch_prctl && sys::kGettid == SYS_gettid && sys::kFutex == SYS_futex);
static_assert(sys::kSetTidAddress == SYS_set_tid_address && sys::kClockGettime == SYS_clock_gettime);
static_assert(sys::kTimerCreate == SYS_timer_create && sys::kTimerSettime == SYS_timer_settime &&
              sys::kTimerDelete == SYS_timer_delete);
static_assert(sys::kExitGroup == SYS_exit_group && sys::kTgkill == SYS_tgkill && sys::kOpenat == SYS_openat);
static_assert(sys::kSetRobustList == SYS_set_robust_list && sys::kPrlimit64 == SYS_prlimit64);
static_assert(sys::kRseq == SYS_rseq && sys::kFtruncate == SYS_ftruncate && sys::kGetuid == SYS_getuid);
static_assert(sys::kRtSigqueueinfo == SYS_rt_sigqueueinfo && sys::kRtTgsigqueueinfo == SYS_rt_tgsigqueueinfo);
static_assert(sys::kMemfdCreate == SYS_memfd_create);
static_assert(sys::kIoctl == SYS_ioctl && sys::kSendmsg == SYS_sendmsg && sys::kUserfaultfd == SYS_userfaultfd);
static_assert(a::kUffdioApi == UFFDIO_API && a::kUffdioRegister == UFFDIO_REGISTER && a::kUffdApi == UFFD_API);
static_assert(a::kUffdFeatureEventFork == UFFD_FEATURE_EVENT_FORK && a::kUffdFeatureEventRemap == UFFD_FEATURE_EVENT_REMAP);
static_assert(a::kUffdFeatureEventRemove == UFFD_FEATURE_EVENT_REMOVE && a::kUffdFeatureEventUnmap == UFFD_FEATURE_EVENT_UNMAP);
static_assert(a::kUffdFeatureThreadId == UFFD_FEATURE_THREAD_ID && a::kONonblock == O_NONBLOCK);
static_assert(a::kUffdioRegisterModeMissing == UFFDIO_REGISTER_MODE_MISSING);
static_assert(sizeof(a::UffdioApi) == sizeof(uffdio_api) && sizeof(a::UffdioRegister) == sizeof(uffdio_register));
static_assert(sizeof(a::Msghdr) == sizeof(msghdr) && offsetof(a::Msghdr, control) == offsetof(msghdr, msg_control));
static_assert(sizeof(a::CmsgOneFd) == CMSG_SPACE(sizeof(int)) && a::kScmRights == SCM_RIGHTS);
static_assert(a::kSolSocket == SOL_SOCKET && a::kMsgNosignal == MSG_NOSIGNAL && sizeof(a::Iovec) == sizeof(iovec));

TEST_CASE("the raw system calls return the kernel's values") {
  CHECK(sys::rawSyscall(sys::kGetpid) == getpid());
  CHECK(sys::rawSyscall(sys::kClose, -1) == -EBADF);
  long m = sys::rawSyscall(sys::kMmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(m > 0);
  *reinterpret_cast<volatile int*>(m) = 7;
  CHECK(sys::rawSyscall(sys::kMunmap, m, 4096) == 0);
  a::Timespec ts{};
  CHECK(sys::rawSyscall(sys::kClockGettime, a::kClockMonotonic, reinterpret_cast<long>(&ts)) == 0);
  CHECK(ts.sec > 0);
}

}  // namespace
}  // namespace mig::restore
