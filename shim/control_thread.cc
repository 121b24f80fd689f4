// The shim's control thread: started by the library constructor, it owns the
// process's control socket (abstract Unix socket named by PID) and serves migctl's
// checkpoint requests. It blocks every application signal, so the application's
// handlers never run on it. Unless the job forwards, it has an fd table of its own
// (Runtime::controlOwnTable): its fds are never the program's, and the program's fd
// calls keep the kernel's fast path for a table with one user.
#include "shim/checkpoint.h"
#include "shim/control_protocol.h"
#include "shim/fd_passing.h"
#include "shim/forward/child_pids.h"
#include "shim/forward/exec_handoff.h"
#include "shim/forward/state.h"
#include "shim/log.h"
#include "shim/own_fds.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"
#include "shim/write_tracking.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <poll.h>
#include <pthread.h>
#include <algorithm>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

namespace mig::shim {

constinit Runtime g_runtime{};  // constant: no initializer may run after the shim's constructor
thread_local volatile sig_atomic_t t_checkpointInterrupted MIG_TLS;
thread_local pid_t t_vtid MIG_TLS;
thread_local pid_t t_formerTids[kFormerTids] MIG_TLS;
thread_local int t_ownLogFd MIG_TLS;

pid_t realPid() { return static_cast<pid_t>(rawSyscall(SYS_getpid)); }
pid_t realTid() { return static_cast<pid_t>(rawSyscall(SYS_gettid)); }

namespace {

// How long the constructor waits for the control thread to listen (it starts at once:
// the wait is its thread start and four system calls).
constexpr long kControlStartWaitNs = 5'000'000'000;

bool s_handedOff;  // this process forwards from its start (exec_handoff.h)

int bindControlSocket(pid_t pid, bool alias = false) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  fd = static_cast<int>(placeOwnFd(fd));  // out of the program's way (own_fds.h)
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  int len = control::ctlSocketName(addr.sun_path, sizeof(addr.sun_path), getuid(), pid, alias);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), offsetof(sockaddr_un, sun_path) + len) != 0 ||
      listen(fd, 4) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool peerAllowed(int conn) {
  struct ucred cred {};
  socklen_t len = sizeof(cred);
  if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  return cred.uid == 0 || cred.uid == getuid();
}

// The eventfd that wakes the control thread (own_fds.cc), made anew in a new process.
void makeControlWake() {
  Runtime& rt = g_runtime;
  long fd = rawSyscall(SYS_eventfd2, 0, EFD_CLOEXEC | EFD_NONBLOCK);
  rt.controlWake = fd < 0 ? 0 : static_cast<int>(placeOwnFd(fd)) + 1;
}

// In the control thread: leaves the program's fd table for a copy of its own and
// closes there every fd but MIG_LOG's (the program's files must close when the program
// closes them). False (still sharing) if the kernel refuses.
bool takeOwnTable() {
  Runtime& rt = g_runtime;
  if (rawSyscall(SYS_unshare, CLONE_FILES) != 0) return false;
  const int log = rt.logFd - 1;
  if (log > 0) rawSyscall(SYS_close_range, 0, log - 1, 0);
  rawSyscall(SYS_close_range, log + 1, ~0u, 0);  // log -1: all of them
  t_ownLogFd = log >= 0 ? log + 1 : 0;
  rt.controlOwnTable = true;
  return true;
}

void listenAnew(bool restored) {
  Runtime& rt = g_runtime;
  rt.controlListen = bindControlSocket(realPid());
  rt.controlAlias = restored && realPid() != rt.vpid ? bindControlSocket(rt.vpid, true) : -1;
  rt.controlConn = -1;
  rt.controlWake = 0;
  if (!rt.controlOwnTable) makeControlWake();  // only the program's dup2 needs it (own_fds.cc)
}

// Pre-copy: the userfaultfd is made here, in the job, and handed over; our copy is
// closed at once, so it lives only as long as migctl's (its close unregisters all).
// copyOnWrite: the synchronous kind, for a concurrent checkpoint.
void sendWriteTracking(int conn, bool copyOnWrite) {
  int fd = copyOnWrite ? control::makeCopyOnWriteUffd() : control::makeWriteTrackingUffd();
  control::Reply reply{control::kMagic, fd >= 0 ? control::kOk : control::kNoTracking, 0, 0,
                       static_cast<uint32_t>(fd >= 0 ? 0 : -fd)};
  (void)!control::sendFd(conn, fd, &reply, sizeof(reply), MSG_NOSIGNAL);
  if (fd >= 0) close(fd);
}

// A hop out from home asks: a child born away that came home and ended (a zombie, no
// shim of its own to answer) is known only to its parent's table.
void sendBornAwayChildren(int conn) {
  struct {
    control::Reply reply;
    pid_t pids[forward::kMaxAwayChildren];
  } msg{};
  const uint32_t n = forward::listChildren(msg.pids, forward::kMaxAwayChildren);
  msg.reply = control::Reply{control::kMagic, control::kOk, 0, 0, n};
  (void)!::send(conn, &msg, sizeof(msg.reply) + n * sizeof(pid_t), MSG_NOSIGNAL);
}

// A hop from home asks before its commit whether this process could exec its deputy
// (checkpoint.h probeDeputy); the args follow the request.
void answerDeputyProbe(int conn) {
  static char args[control::kMaxDeputyArgs];
  struct pollfd p = {conn, POLLIN, 0};
  long n = rawSyscall(SYS_poll, reinterpret_cast<long>(&p), 1, 10000) == 1
               ? rawSyscall(SYS_read, conn, reinterpret_cast<long>(args), sizeof(args))
               : 0;
  const int err = n > 0 ? probeDeputy(args, static_cast<size_t>(n)) : EINVAL;
  control::Reply reply{control::kMagic, err == 0 ? control::kOk : control::kDeputyExecFailed, 0, 0,
                       static_cast<uint32_t>(err)};
  (void)!::send(conn, &reply, sizeof(reply), MSG_NOSIGNAL);
}

// Serves migctl's connection (Runtime::controlConn, whose number the program's dup2
// may move meanwhile: own_fds.cc); returns true when this is now a freshly restored
// process.
bool serve() {
  Runtime& rt = g_runtime;
  const int& conn = rt.controlConn;
  control::Request req{};
  if (peerAllowed(conn) && read(conn, &req, sizeof(req)) == sizeof(req) && req.magic == control::kMagic &&
      req.version == control::kVersion &&
      (req.op == control::kOpTrackWrites || req.op == control::kOpCopyOnWrite)) {
    sendWriteTracking(conn, req.op == control::kOpCopyOnWrite);
    return false;
  }
  if (req.magic == control::kMagic && req.version == control::kVersion && req.op == control::kOpBornAwayChildren) {
    sendBornAwayChildren(conn);  // (peerAllowed above)
    return false;
  }
  if (req.magic == control::kMagic && req.version == control::kVersion && req.op == control::kOpProbeDeputy) {
    answerDeputyProbe(conn);  // (peerAllowed above)
    return false;
  }
  if (req.magic != control::kMagic || req.version != control::kVersion ||
      req.op != control::kOpCheckpoint || !peerAllowed(conn)) {
    control::Reply reply{control::kMagic, control::kBadRequest, 0, 0, 0};
    (void)!write(conn, &reply, sizeof(reply));
    return false;
  }
  if (logging()) LogLine() << "checkpoint: freezing every thread for migctl";
  if (!runCheckpoint(conn, req)) {
    if (logging()) LogLine() << "checkpoint: done, running on here";
    return false;
  }
  // A restored process (runCheckpoint forgot the old control fds). Listen under the
  // new real PID, which its parent sees, and under the virtual PID as an alias
  // (control_protocol.h). The restorer made this thread share the program's table: a
  // job that forwards keeps it so (its relay connections are there, shim/forward/),
  // any other leaves it again.
  if (rt.forward.status.load() != forward::kActive) takeOwnTable();
  listenAnew(true);
  return true;
}

void* controlMain(void*) {
  Runtime& rt = g_runtime;
  rt.controlTid = realTid();
  if (rt.controlOwnTable) {
    // Started by startControlThread, which waits for the sockets.
    rt.controlOwnTable = takeOwnTable();
    listenAnew(false);
    rt.controlLoops.fetch_add(1, std::memory_order_acq_rel);
    rawSyscall(SYS_futex, reinterpret_cast<long>(&rt.controlLoops), FUTEX_WAKE_PRIVATE, 0x7fffffff);
  }
  for (;;) {
    if (rt.controlListen < 0) return nullptr;
    // The wake fd first: the program's dup2 onto one of our numbers moves ours first
    // (own_fds.cc) and wakes us here, so we never poll a number that is the program's.
    struct pollfd fds[3] = {{rt.controlWake - 1, POLLIN, 0}, {rt.controlListen, POLLIN, 0}, {rt.controlAlias, POLLIN, 0}};
    rt.controlLoops.fetch_add(1, std::memory_order_acq_rel);
    if (rawSyscall(SYS_poll, reinterpret_cast<long>(fds), rt.controlAlias >= 0 ? 3 : 2, -1) < 0) continue;
    if (fds[0].revents & POLLIN) {
      uint64_t n;
      rawSyscall(SYS_read, fds[0].fd, reinterpret_cast<long>(&n), sizeof(n));
      continue;
    }
    if (fds[1].fd != rt.controlListen || fds[2].fd != rt.controlAlias) continue;  // moved meanwhile
    int listener = (fds[1].revents & POLLIN) ? rt.controlListen : rt.controlAlias;
    // In the band with the others (own_fds.h): the low numbers are where shells and
    // daemons dup2 (a job that forwards shares its fd table with this thread).
    int conn = static_cast<int>(placeOwnFd(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC)));
    if (conn < 0 && (errno == EBADF || errno == ENOTSOCK || errno == EINVAL)) {
      // The application closed or replaced our socket's fd: listen anew.
      if (listener == rt.controlAlias) rt.controlAlias = -1;
      else rt.controlListen = bindControlSocket(realPid());
      continue;
    }
    if (conn < 0) continue;
    rt.controlConn = conn;  // the program's dup2 onto it moves it, its close leaves it (own_fds.cc)
    if (!serve()) {
      // Forgotten before it is closed: its number may be the program's next, and a
      // fork's child closes this one (afterForkInChild). Left set after a checkpoint the
      // job resumed from (a hop aborted with "try again"), every `$(...)` child of a
      // bash away from home closed its pipe's write end (EBADF) until the next one.
      const int last = rt.controlConn;
      rt.controlConn = -1;
      close(last);
    }
  }
}

void startControlThread() {
  Runtime& rt = g_runtime;
  // A job that forwards from its start (exec'd or forked away from home) keeps its
  // control fds in the program's table, beside its relay connections.
  rt.controlOwnTable = !s_handedOff && rt.forward.status.load() != forward::kActive;
  const uint32_t loops = rt.controlLoops.load(std::memory_order_acquire);
  if (!rt.controlOwnTable) {
    rt.controlListen = bindControlSocket(realPid());
    if (rt.controlListen < 0) return;  // no control socket: the job runs, uncheckpointable
    makeControlWake();
  }
  sigset_t all, old;
  sigfillset(&all);
  sigdelset(&all, kCheckpointSignal);
  pthread_sigmask(SIG_SETMASK, &all, &old);  // the new thread inherits this mask
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t t;
  if (pthread_create(&t, &attr, controlMain, nullptr) != 0) {
    if (rt.controlListen >= 0) rawSyscall(SYS_close, rt.controlListen);  // not close(): ours are kept from the program (own_fds.cc)
    rt.controlListen = -1;
  } else if (rt.controlOwnTable) {
    // The job is checkpointable once main runs, as when the socket was made here: wait
    // until the control thread listens (bounded: a job never hangs for mig).
    struct timespec start {};
    rawSyscall(SYS_clock_gettime, CLOCK_MONOTONIC, reinterpret_cast<long>(&start));
    for (;;) {
      const uint32_t now = rt.controlLoops.load(std::memory_order_acquire);
      if (now != loops) break;
      struct timespec t {};
      rawSyscall(SYS_clock_gettime, CLOCK_MONOTONIC, reinterpret_cast<long>(&t));
      const long waited = (t.tv_sec - start.tv_sec) * 1'000'000'000L + (t.tv_nsec - start.tv_nsec);
      if (waited > kControlStartWaitNs) break;
      struct timespec slice = {0, 100'000'000};
      rawSyscall(SYS_futex, reinterpret_cast<long>(&rt.controlLoops), FUTEX_WAIT_PRIVATE, now, reinterpret_cast<long>(&slice));
    }
  }
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void initProcess() {
  Runtime& rt = g_runtime;
  // A child that a migrated process forked away from home keeps the PIDs home gave it.
  const pid_t away = rt.pendingVpid;
  rt.vpid = away != 0 ? away : realPid();
  rt.vppid = away != 0 ? rt.pendingVppid : static_cast<pid_t>(rawSyscall(SYS_getppid));
  rt.bornAway = away != 0;
  rt.pendingVpid = 0;
  rt.restored = false;
  rt.frozenNs = 0;
  rt.controlListen = -1;
  rt.controlAlias = -1;
  rt.controlConn = -1;
  rt.self.pipeFd = -1;
  rt.self.busy.store(false);
  t_vtid = away;  // 0: computed on first use
  installCheckpointHandler();
  startControlThread();
}

// A forked child is a new job member born at home: its own PID is its virtual PID.
// The parent's control fds came along with the fork: closed, or the child would hold
// (and a checkpoint of it take as its own) the parent's listening control socket.
void afterForkInChild() {
  Runtime& rt = g_runtime;
  if (rt.self.pipeFd >= 0) rawSyscall(SYS_close, rt.self.pipeFd);
  // In a table of its own, the control thread's fds did not come along: those numbers
  // may be the program's.
  if (!rt.controlOwnTable) {
    for (int fd : {rt.controlListen, rt.controlAlias, rt.controlConn, rt.controlWake - 1}) {
      if (fd >= 0) rawSyscall(SYS_close, fd);
    }
  }
  rt.controlWake = 0;
  initProcess();
}

__attribute__((constructor)) void shimInit() {
  // A program exec'd by a migrated process forwards as that process did.
  const bool handedOff = forward::takeHandoff();
  s_handedOff = handedOff;
  openLog();
  // Write-behind off (docs/design.md "Writes to home files go behind"): read before
  // main, kept in memory across hops like the rest of the forwarding state.
  const char* sync = getenv("MIG_SYNC_WRITES");
  g_runtime.forward.syncWrites = sync != nullptr && sync[0] == '1' && sync[1] == '\0';
  initProcess();
  if (!handedOff) recordHome();  // exec'd away from home: home's name is not known here
  pthread_atfork(nullptr, nullptr, afterForkInChild);
  if (handedOff) forward::activateHandoff();
}

}  // namespace
}  // namespace mig::shim
