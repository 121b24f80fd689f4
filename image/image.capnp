# Metadata of the sections of a mig checkpoint image. Each section of an image
# (see image/format.h for the framing) carries one of these structs as a Cap'n
# Proto message; bulk page data travels raw beside it. Ordinals are never
# renumbered: new fields are appended, so older images stay readable.
@0xa6aa0d2ae921df10;

$import "/capnp/c++.capnp".namespace("mig::image::schema");

struct CpuFeatures {
  # What the CPU state saved in the image needs from the CPU that restores it.
  vendor @0 :Text;           # cpuid leaf 0 vendor string, informational
  xcr0 @1 :UInt64;           # XSAVE state components enabled (XCR0); the image's
                             # register frames may contain any of them
  xsaveSize @2 :UInt32;      # bytes of the XSAVE area for xcr0 (cpuid 0xD.0 EBX)
  avx @3 :Bool;
  avx2 @4 :Bool;
  avx512f @5 :Bool;
}

struct Header {
  # First section of every image: where and when it was made.
  formatVersion @0 :UInt32;  # repeats the frame's version, for tools
  arch @1 :Text;             # "x86_64"
  cpu @2 :CpuFeatures;
  kernelRelease @3 :Text;    # uname -r of the checkpointing host
  pageSize @4 :UInt32;
  createdNs @5 :Int64;       # CLOCK_REALTIME at checkpoint, nanoseconds
  jobId @6 :UInt64;          # 0 when the process was never registered with a shadowd
  hostname @7 :Text;         # host that wrote the image
  vpid @8 :Int32;            # the process's virtual PID
  command @9 :Text;          # argv[0], for humans
  ownerKnown @10 :Bool;      # false in images made before owners were recorded
  ownerUid @11 :UInt32;      # the process's real uid and gid and its supplementary
  ownerGid @12 :UInt32;      # groups, as the kernel reports them (/proc/PID/status),
  ownerGroups @13 :List(UInt32);  # never as the process says: a restart runs as them
}

struct MemoryRegion {
  # One line of /proc/self/maps at checkpoint time.
  start @0 :UInt64;
  end @1 :UInt64;
  prot @2 :UInt32;           # PROT_* bits
  flags @3 :UInt32;          # MAP_PRIVATE or MAP_SHARED, plus MAP_GROWSDOWN etc.
  kind @4 :Kind;
  path @5 :Text;             # backing file for kind == file
  fileOffset @6 :UInt64;
  inode @7 :UInt64;          # consistency record of the backing file
  device @8 :UInt64;
  fileSize @9 :UInt64;
  mtimeNs @10 :Int64;

  enum Kind {
    anonymous @0;            # private or shared anonymous memory
    file @1;                 # mapped from `path`; unmodified pages are not saved
    heap @2;                 # [heap]: restored with PR_SET_MM brk bounds
    stack @3;                # [stack] of the main thread
    vdso @4;                 # [vdso]: the restorer moves the new kernel's vdso here
    vvar @5;                 # [vvar]
    vvarVclock @6;           # [vvar_vclock] (kernel >= 6.13)
    memfd @7;                # memfd or deleted shared file: contents are saved
  }
}

struct MemoryMap {
  regions @0 :List(MemoryRegion);  # sorted by start, non-overlapping
}

struct PageRun {
  # `pages` consecutive pages starting at `addr`, stored back to back in the
  # section's raw data in the order the runs are listed.
  addr @0 :UInt64;
  pages @1 :UInt32;
}

struct Pages {
  # Page contents. The raw data of the section is the concatenation of the runs.
  runs @0 :List(PageRun);
  precopyRound @1 :UInt32;  # 0: taken while the job was frozen; n > 0: sent while it ran,
                            # in pre-copy round n (used only for pages a keptPages lists)
  # A keptPages section is a Pages message without data: the pages it lists take their
  # contents from the latest pre-copy round that holds them (format.h).
  extents @2 :List(ByteRun);  # sparsePages sections only: the bytes of the runs' pages that
                              # are stored (the section's raw data, back to back in this
                              # order); every other byte of those pages is the byte the
                              # restart puts there anyway (zero, or the mapped file's)
}

struct ByteRun {
  # `len` bytes at `addr`, possibly across page borders; 8-byte aligned.
  addr @0 :UInt64;
  len @1 :UInt32;
}

struct Thread {
  # One thread stopped in the checkpoint signal handler.
  vtid @0 :Int32;            # thread id the application knows
  sigframe @1 :Data;         # the frame's bytes when they are not in saved memory (empty:
                             # the frame lies on the thread's stack, saved with it)
  sigframeAddr @2 :UInt64;   # address of the frame's struct ucontext: the stack pointer
                             # rt_sigreturn needs
  fsBase @3 :UInt64;         # TLS base
  gsBase @4 :UInt64;
  tidAddress @5 :UInt64;     # CLONE_CHILD_CLEARTID / set_tid_address target
  robustList @6 :UInt64;
  robustListLen @7 :UInt64;
  rseqAddr @8 :UInt64;
  rseqLen @9 :UInt32;
  rseqSig @10 :UInt32;
  altStackSp @11 :UInt64;
  altStackSize @12 :UInt64;
  altStackFlags @13 :Int32;
  pendingSignals @14 :List(UInt32);  # signals pending for this thread only
  pendingSiginfo @16 :List(Data);  # each queued instance of a pending signal for this
                             # thread: its 128-byte siginfo_t, in queue order (when the
                             # checkpointer could read them; else only pendingSignals)
  realTid @15 :Int32;        # kernel TID at the checkpoint: what futex words of the
                             # robust mutexes it holds contain
  name @17 :Text;            # its name (/proc/PID/task/TID/comm, pthread_setname_np): what
                             # ps, top, pgrep and killall go by
}

struct Threads {
  threads @0 :List(Thread);  # the first one is the main thread
}

struct MmLayout {
  # The kernel's idea of the process layout (struct prctl_mm_map), restored with
  # prctl(PR_SET_MM, PR_SET_MM_MAP) so brk(), /proc/self/cmdline and environ work.
  startCode @0 :UInt64;
  endCode @1 :UInt64;
  startData @2 :UInt64;
  endData @3 :UInt64;
  startBrk @4 :UInt64;
  brk @5 :UInt64;
  startStack @6 :UInt64;
  argStart @7 :UInt64;
  argEnd @8 :UInt64;
  envStart @9 :UInt64;
  envEnd @10 :UInt64;
  auxv @11 :Data;            # the saved auxiliary vector, as in /proc/pid/auxv
}

struct SigAction {
  # One kernel sigaction, as rt_sigaction takes it.
  handler @0 :UInt64;
  flags @1 :UInt64;
  restorer @2 :UInt64;
  mask @3 :UInt64;
}

struct Timer {
  valueNs @0 :Int64;         # time left until it fires, 0 = disarmed
  intervalNs @1 :Int64;
}

struct Rlimit {
  resource @0 :UInt32;
  soft @1 :UInt64;
  hard @2 :UInt64;
}

struct Process {
  # Process-wide kernel state other than memory, threads and files.
  mm @0 :MmLayout;
  sigactions @1 :List(SigAction);  # index i is signal i+1
  itimerReal @2 :Timer;            # alarm() / setitimer(ITIMER_REAL)
  umask @3 :UInt32;
  cwd @4 :Text;
  rlimits @5 :List(Rlimit);
  resumeInfoAddr @6 :UInt64;       # where the restorer writes plan::ResumeInfo for the shim
  monotonicNs @7 :Int64;           # CLOCK_MONOTONIC at the freeze
  processPending @8 :List(UInt32); # signals pending for the whole process
  processPendingSiginfo @9 :List(Data);  # their siginfo_t, as Thread.pendingSiginfo
  resumeEntry @10 :UInt64;         # the shim's mig_resumed_thread: each restored thread calls
                                   # it instead of returning into its frame (0 = none)
  posixTimers @11 :List(PosixTimer);  # timer_create timers (resources/posix_timers.cc)
}

struct PosixTimer {
  # One timer_create timer. Recreated by the restorer with the same id, so the timer_t
  # values the program holds stay valid.
  id @0 :Int32;              # the kernel timer id
  clock @1 :Int32;           # clockid as the kernel holds it (-6: the process's CPU clock)
  notify @2 :Int32;          # sigev_notify: SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID (4)
  signo @3 :Int32;
  value @4 :UInt64;          # sigev_value (sival_ptr / sival_int)
  thread @5 :Int32;          # notify == SIGEV_THREAD_ID: the target's kernel TID at the
                             # checkpoint (Thread.realTid), else 0
  timer @6 :Timer;           # time left (0 = disarmed) and interval
  overrun @7 :Int32;         # timer_getoverrun at the checkpoint (not restorable: reported)
  absoluteNs @8 :Int64;      # armed with TIMER_ABSTIME on CLOCK_REALTIME or CLOCK_TAI: the
                             # date it fires (ns since the epoch), which a restart keeps; 0 else
}

struct FileDescriptor {
  # One open fd. The fields every kind has come first; each kind's own state sits in
  # a group named after it (resources/<kind>.cc writes and reads it). Groups keep
  # their fields' ordinals, so images written before the groups read the same.
  fd @0 :Int32;
  kind @1 :Kind;
  path @2 :Text;             # as /proc/pid/fd showed it (without " (deleted)")
  flags @3 :UInt32;          # open(2) flags: access mode, O_APPEND, O_NONBLOCK, ...
  cloexec @4 :Bool;
  offset @5 :Int64;
  dupOf @6 :Int32 = -1;      # lowest fd sharing this open file description, or -1
  contents @11 :Data;        # bytes the kind keeps in the image: a deleted file's contents
                             # (kind == unlinked), or the bytes that were in a pipe's buffer
                             # (kind == pipe, on the read end)

  file :group {
    # kind == file (and unlinked): the consistency record, stat(2) of the open file
    inode @7 :UInt64;
    device @8 :UInt64;
    size @9 :UInt64;
    mtimeNs @10 :Int64;
    ctimeNs @29 :Int64;      # status change time: no user can put it back after writing
                             # in place (0: an image from before it was recorded)
    contentHash @30 :UInt64; # XXH3-64 of the contents (never 0) of a file up to 8 MiB, at
                             # checkpoint; 0: not recorded (larger, or a migration)
  }
  pipe :group {
    id @12 :UInt64;          # the pipe's inode; both ends carry it
  }
  eventfd :group {
    count @13 :UInt64;       # the counter
    semaphore @14 :Bool;     # EFD_SEMAPHORE (reads take 1 at a time)
  }
  timerfd :group {
    timer @15 :TimerFd;
  }
  signalfd :group {
    sigmask @16 :UInt64;     # the signals it reads (bit n-1: signal n)
  }
  epoll :group {
    targets @17 :List(EpollTarget);  # its registrations
  }
  socket :group {
    # kind == inetSocket or unixSocket (resources/inet_socket.cc, unix_socket.cc): the
    # socket as getsockname/getpeername/getsockopt on a copy of it (pidfd_getfd) showed it.
    family @18 :UInt16;      # AF_INET, AF_INET6, AF_UNIX
    type @19 :UInt16;        # SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
    protocol @20 :UInt16;    # SO_PROTOCOL: IPPROTO_TCP, IPPROTO_UDP, 0
    state @21 :SocketState;
    local @22 :Data;         # getsockname's struct sockaddr, as the kernel gave it
    peer @23 :Data;          # getpeername's, empty when not connected
    backlog @24 :UInt32;     # a listening socket's listen(2) backlog (sock_diag); 0: unknown
    options @25 :List(SocketOption);  # set again on the new socket, in order
    inode @26 :UInt64;       # the socket's inode (socket:[N])
    peerInode @27 :UInt64;   # a Unix socketpair end: the other end's inode; else 0
    queued @28 :List(Data);  # a Unix socketpair end: what waits to be read on it, one
                             # entry per datagram (a stream's bytes in one or more pieces)
  }

  enum Kind {
    file @0;                 # regular file or directory, reopened by path
    inherited @1;            # terminal, pipe or socket: the restarting command's own fd
    device @2;               # /dev/null and friends, reopened by path
    unlinked @3;             # deleted while open: recreated from contents, deleted again
    pipe @4;                 # a pipe whose both ends the process holds: recreated
    eventfd @5;              # eventfd(2): recreated with eventCount
    timerfd @6;              # timerfd_create(2): recreated from `timer`
    signalfd @7;             # signalfd(2): recreated with sigmask
    epoll @8;                # epoll instance: recreated last, with epollTargets
    inetSocket @9;           # TCP or UDP socket: recreated from `socket` (a connection: reset)
    unixSocket @10;          # Unix socket: listening, bound or a socketpair within the process
  }

  enum SocketState {
    unbound @0;              # made, never bound
    bound @1;                # bound (a UDP socket maybe connected too: then `peer` is set)
    listening @2;            # listen(2) called
    connected @3;            # a TCP connection or a Unix socketpair end
  }
}

struct SocketOption {
  # One getsockopt value, set again with setsockopt at restart.
  level @0 :Int32;           # SOL_SOCKET, IPPROTO_TCP, IPPROTO_IP, IPPROTO_IPV6
  name @1 :Int32;            # SO_REUSEADDR, TCP_NODELAY, ...
  value @2 :Data;            # the option's bytes (an int, struct linger, struct timeval)
}

struct TimerFd {
  # A timerfd as /proc/PID/fdinfo (made exact by timerfd_gettime) showed it.
  clockid @0 :Int32;         # CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_BOOTTIME, ...
  valueNs @1 :Int64;         # time left until the next expiration, 0 = disarmed
  intervalNs @2 :Int64;      # period, 0 = one-shot
  ticks @3 :UInt64;          # expirations not yet read
  settimeFlags @4 :UInt32;   # TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET
  deadlineNs @5 :Int64;      # an absolute timer on a wall clock (CLOCK_REALTIME[_ALARM] and
                             # TFD_TIMER_ABSTIME): its expiration on that clock; else 0
}

struct EpollTarget {
  # One registration of an epoll instance (a "tfd:" line of its fdinfo).
  fd @0 :Int32;              # the watched fd (the number it was registered under, which is
                             # the number of the same open file in the image)
  events @1 :UInt32;         # EPOLLIN..., EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE; a oneshot
                             # registration that already fired has only those flag bits left
  data @2 :UInt64;           # epoll_event.data, returned by epoll_wait as it was
}

struct Files {
  fds @0 :List(FileDescriptor);
  locks @1 :List(FileLock);  # the locks the process holds on its files (resources/file_locks.cc)
}

struct FileLock {
  # One lock a process holds, as a "lock:" line of /proc/PID/fdinfo/FD showed it: taken
  # again on that fd at restart, before the process runs.
  fd @0 :Int32;              # the fd it was taken through (the first of its dups)
  kind @1 :Kind;
  write @2 :Bool;            # exclusive (F_WRLCK, LOCK_EX); else shared
  start @3 :Int64;           # fcntl locks: the first byte (flock: 0)
  end @4 :Int64;             # the last byte, -1: to the end of the file (flock: -1)

  enum Kind {
    posix @0;                # fcntl F_SETLK: the process's
    ofd @1;                  # fcntl F_OFD_SETLK: the open file description's
    flock @2;                # flock(2): the open file description's
  }
}

struct End {
  # Last section: lets a streaming reader tell a complete image from a cut one.
  sections @0 :UInt32;       # number of sections before this one
  dataBytes @1 :UInt64;      # sum of the raw data lengths of those sections
}

struct TreeMember {
  # One process of a checkpointed tree. PIDs are the member's virtual PIDs (what
  # getpid() answered in it); a process group or session led by a process outside
  # the tree keeps the number the kernel gave it.
  vpid @0 :Int32;
  vppid @1 :Int32;           # the root's is its parent outside the tree
  pgid @2 :Int32;
  sid @3 :Int32;
  zombie @4 :Bool;           # ended, not reaped yet: only its wait status is kept
  waitStatus @5 :Int32;      # a zombie's status as waitpid() reports it
  command @6 :Text;          # /proc/PID/comm, for messages and `migctl image info`
  realPid @7 :Int32;         # its kernel PID when checkpointed (for messages)
}

struct Tree {
  # Section `tree` (format version 2): the members of a checkpoint of a process
  # tree, root first, every parent before its children. Each live member's own
  # sections follow, each group opened by a `member` section; zombies have none.
  members @0 :List(TreeMember);
  pipes @1 :List(TreePipe);  # pipes between members: made once, shared, at the restart
}

struct TreePipe {
  id @0 :UInt64;             # the pipe's inode: FileDescriptor.pipe.id of every end of it
  contents @1 :Data;         # the bytes in it at the checkpoint
  capacity @2 :UInt32;       # F_GETPIPE_SZ
  fifo @3 :Text;             # a FIFO (named pipe): its path, opened again at the restart
                             # ("": an anonymous pipe, or a FIFO whose name was removed)
}

struct Member {
  # Section `member`: the sections up to the next `member` (or `end`) are this
  # member's process, threads, files, memory map and pages.
  vpid @0 :Int32;
}

struct Parent {
  # An incremental image (`migctl checkpoint --every`): its pages sections hold only the
  # pages written since its parent, its keptPages section the pages it takes from the
  # parent's chain. The parent is named and identified, so a missing, replaced or
  # changed one is refused (image/image_chain.h).
  file @0 :Text;          # the parent's file name, in the same directory
  headerHash @1 :UInt64;  # XXH3-64 of the parent's header metadata (holds its time and host)
  dataBytes @2 :UInt64;   # the parent's End.dataBytes
  sections @3 :UInt32;    # the parent's End.sections
}

struct Ipc {
  # Section `ipc` (10): shared objects that outlive one process or are shared by
  # several: memory shared between a tree's members, and System V IPC objects
  # (resources/shared_memory.cc, resources/sysv_ipc.cc). In a tree's image it comes
  # right after the tree section, in a single process's right after the header.
  # The section's raw data holds the contents (memory, segments) back to back.
  sharedMemory @0 :List(SharedMemoryObject);
  sysvShm @1 :List(SysvShm);
  sysvSem @2 :List(SysvSem);
  sysvMsg @3 :List(SysvMsg);
}

struct SharedMemoryView {
  # One mapping of a shared object in one member.
  vpid @0 :Int32;            # the member's virtual PID
  start @1 :UInt64;          # the region, as in that member's memory map
  end @2 :UInt64;
  offset @3 :UInt64;         # where the view starts in the object
}

struct SharedMemoryObject {
  # A MAP_SHARED object without a name to reopen (shared anonymous memory, a memfd,
  # a deleted file) mapped by two members or more: made once at the restart and
  # mapped by each; its pages are here, not in the members' pages sections.
  name @0 :Text;             # the path /proc/PID/maps shows (for messages, and the memfd's name)
  size @1 :UInt64;           # bytes, a multiple of the page size
  dataOffset @2 :UInt64;     # where its contents start in the section's data
  views @3 :List(SharedMemoryView);
}

struct SysvPerm {
  # What ipcs shows of an object: recreated with the same key and id.
  key @0 :Int32;             # 0: IPC_PRIVATE
  id @1 :Int32;              # the id the job holds
  uid @2 :UInt32;
  gid @3 :UInt32;
  mode @4 :UInt32;           # the 9 permission bits
}

struct SysvShm {
  perm @0 :SysvPerm;
  size @1 :UInt64;           # shm_segsz
  dataOffset @2 :UInt64;     # where its contents start in the section's data
  removed @3 :Bool;          # IPC_RMID done while attached: removed again once the job is restored
}

struct SysvSem {
  perm @0 :SysvPerm;
  values @1 :List(UInt16);   # semval of each semaphore of the set
}

struct SysvMsg {
  perm @0 :SysvPerm;
  qbytes @1 :UInt64;         # msg_qbytes
  messages @2 :List(SysvMessage);  # in queue order
}

struct SysvMessage {
  type @0 :Int64;
  text @1 :Data;
}
