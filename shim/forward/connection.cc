// See connection.h. Runs in the SIGSYS handler with every signal blocked: raw system
// calls from the shim's code only, no allocation, no errno.
#include "shim/forward/connection.h"

#include "rsc/call_policy.h"
#include "rsc/marshal.h"
#include "shim/forward/child_table.h"
#include "shim/forward/homecoming.h"
#include "shim/forward/signals.h"
#include "shim/forward/state.h"
#include "shim/forward/trapped_call.h"
#include "shim/log.h"
#include "shim/own_fds.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>

namespace mig::forward {
namespace {

using shim::rawSyscall;

// Long enough for any call the deputy runs quickly however loaded the link is;
// a relay that says nothing for this long is taken as gone (the call fails with EIO).
constexpr int kReplyTimeoutMs = 120 * 1000;
constexpr uint64_t kBufferSize = rsc::kMaxMessage;

thread_local int t_conn MIG_TLS;
thread_local uint32_t t_connGen MIG_TLS;   // generation t_conn was made in; 0 = none
thread_local uint32_t t_connSlot MIG_TLS;  // its slot in State::connections, + 1
thread_local uint64_t t_seq MIG_TLS;
thread_local uint8_t* t_buf MIG_TLS;
// A pipelined write of this thread failed at home: its fd + 1 (0 = none) and errno,
// until a write, sync or close of that fd reports it.
thread_local int64_t t_failedFd MIG_TLS;
thread_local int32_t t_failedError MIG_TLS;
// The last failure reported: its fd + 1 and this thread's last seq then. The writes
// issued before the report that the relay held back (rsc::WriteFailures) fail too and
// say so; the program has heard of it once. The next write to that fd tells the relay
// the program knows (rsc::kFailureSeen, once: t_seenFd).
thread_local int64_t t_reportedFd MIG_TLS;
thread_local uint64_t t_reportedSeq MIG_TLS;
thread_local int64_t t_seenFd MIG_TLS;
// The last call of this thread ended with EINTR because a signal its program handles
// asked home to cancel it (takeSignalCancel).
thread_local bool t_signalCancel MIG_TLS;

State& state() { return shim::g_runtime.forward; }

bool haveConnection() {
  uint32_t g = t_connGen;
  return g != 0 && g == state().generation.load(std::memory_order_acquire);
}

// One system call's use of the shim's fd in `slot` (+ 1): its number now, marked busy
// in the slot (State::connections) until the call is done, so that a move of the fd to
// let the program take its number (moveConnectionFd, in any thread) waits for it. Each
// call takes the number anew: a move swaps it between two calls. No slot (every slot
// taken): `fixed`, which nothing moves. -1 when a checkpoint emptied the slot.
class SlotUse {
 public:
  SlotUse(uint32_t slot, long fixed) : slot_(slot), fd_(static_cast<int32_t>(fixed)) {
    if (slot_ == 0) return;
    std::atomic<uint64_t>& word = state().connections[slot_ - 1];
    uint64_t v = word.load(std::memory_order_acquire);
    do {
      fd_ = slotFd(v);
    } while (fd_ >= 0 && !word.compare_exchange_weak(v, slotWord(fd_, fd_), std::memory_order_acq_rel));
  }
  ~SlotUse() {
    if (slot_ == 0 || fd_ < 0) return;
    std::atomic<uint64_t>& word = state().connections[slot_ - 1];
    uint64_t v = word.load(std::memory_order_acquire);
    // Only its own mark: the slot may have been emptied (closeSlot) meanwhile.
    while (slotBusy(v) == fd_ && !word.compare_exchange_weak(v, slotWord(slotFd(v), -1), std::memory_order_acq_rel)) {
    }
  }
  SlotUse(const SlotUse&) = delete;
  SlotUse& operator=(const SlotUse&) = delete;
  int32_t fd() const { return fd_; }

 private:
  uint32_t slot_;
  int32_t fd_;
};

// This thread's relay connection, for one system call.
SlotUse useConnection() { return SlotUse(t_connSlot, t_conn); }

long sendAll(const uint8_t* p, uint64_t n) {
  while (n > 0) {
    long w;
    {
      const SlotUse conn = useConnection();
      // MSG_NOSIGNAL: a relay that went away must give EIO, not SIGPIPE.
      w = rawSyscall(SYS_sendto, conn.fd(), reinterpret_cast<long>(p), static_cast<long>(n), MSG_NOSIGNAL, 0, 0);
    }
    if (w == -EINTR) continue;
    if (w <= 0) return w < 0 ? w : -EIO;
    p += w;
    n -= static_cast<uint64_t>(w);
  }
  return 0;
}

// The shim's fds that live while a thread forwards (its connection, the signal watch
// below) have a slot in State::connections: the application's close and dup2 leave
// them alone (isConnectionFd), a checkpoint closes them, a restore forgets them.
// Returns the slot + 1 (0: every slot taken; the fd then goes unguarded).
uint32_t claimSlot(long fd) {
  State& s = state();
  for (uint32_t i = 0; i < kMaxConnections; ++i) {
    uint64_t expected = 0;
    if (s.connections[i].compare_exchange_strong(expected, slotWord(fd, -1))) {
      uint32_t used = s.connectionSlots.load();
      while (used < i + 1 && !s.connectionSlots.compare_exchange_weak(used, i + 1)) {
      }
      return i + 1;
    }
  }
  return 0;
}

// Closes the fd in `slot` (`fixed` if none) and frees the slot; a copy a move made of
// it meanwhile (moveConnectionFd) is closed too. Until the number is closed the slot
// keeps it marked busy: the program's dup2 onto it waits, its close leaves it alone.
void closeSlot(uint32_t slot, long fixed) {
  if (slot == 0) {
    rawSyscall(SYS_close, fixed);
    return;
  }
  const SlotUse use(slot, fixed);
  const int32_t now = slotFd(state().connections[slot - 1].exchange(slotWord(-1, use.fd()), std::memory_order_acq_rel));
  if (now >= 0) rawSyscall(SYS_close, now);
  if (use.fd() >= 0 && use.fd() != now) rawSyscall(SYS_close, use.fd());
}  // the mark goes: the slot is free

// A wait for a reply that may take as long as home likes (a read from a terminal):
// it is the one place where the thread lets the checkpoint signal in, so a thread
// waiting for home does not hold off a checkpoint. The checkpoint closes or
// invalidates the connection (prepareCheckpoint, activation after a restore); the
// wait then ends with kMoved and the caller sends the call again, on the connection
// of the host it now runs on. The application's signals that end the process at
// their default action get in too (signalsThatEnd): `kill -TERM` of a job blocked in
// a read of a home pipe ends it at once, as it would without mig (no handler of the
// application runs inside this one; the deputy's read ends with the job).
constexpr int kCheckpointable = -2;  // timeoutMs: no timeout, checkpointable
constexpr long kMoved = -ECANCELED;

// The application's signals that have a handler cannot run it inside this one (its
// calls would meet SIGSYS blocked), and without mig the kernel would run it at once,
// ending the read with EINTR or restarting it (issue 15). So the wait watches for
// them too, on a signalfd (it sees them pending, takes none): when one comes, it sends
// home a cancel of the call (rsc::kCancel, on the same connection; the relay reads it
// while the call runs) and waits on for the call's answer: EINTR if the deputy's
// read had not begun or got nothing, else what it read, which is returned (the
// signal then comes as the call returns, as from the kernel). The SIGSYS handler
// turns that EINTR into what the signal's action makes of the call (takeSignalCancel).
// The signalfd is made only once the wait has lasted kSignalGraceNs: most answers
// come sooner, and need no system call more.
constexpr long kSignalGraceNs = 10 * 1000 * 1000;

struct SignalWatch {
  uint64_t seq;
  uint32_t call;
  bool sent = false;  // the cancel went home
  long fd = -1;       // the signalfd, once made
  uint32_t slot = 0;  // its slot (claimSlot)
  uint32_t gen = 0;   // the connections' generation it was made in
};

// The signals the wait watches for on its signalfd.
uint64_t watchedSignals() { return signalsHandled() | signalsThatStop(); }

// Makes the signalfd, out of the program's way; false if it cannot be had.
bool openSignalWatch(SignalWatch& w) {
  const uint64_t mask = watchedSignals();
  if (mask == 0) return false;
  w.fd = shim::placeOwnFd(rawSyscall(SYS_signalfd4, -1, reinterpret_cast<long>(&mask), 8, SFD_CLOEXEC | SFD_NONBLOCK));
  if (w.fd < 0) return false;
  w.slot = claimSlot(w.fd);
  w.gen = state().generation.load(std::memory_order_acquire);
  return true;
}

// Closes it, unless a checkpoint since has closed it (or a restore made its number
// another's).
void closeSignalWatch(SignalWatch& w) {
  if (w.fd >= 0 && w.gen == state().generation.load(std::memory_order_acquire)) closeSlot(w.slot, w.fd);
  w.fd = -1;
  w.slot = 0;
}

uint32_t threadId() {
  if (shim::t_vtid == 0) shim::t_vtid = shim::realTid();
  return static_cast<uint32_t>(shim::t_vtid);
}

void sendCancel(SignalWatch& w) {
  rsc::RequestHeader h{};
  h.magic = rsc::kRequestMagic;
  h.length = sizeof(h);
  h.seq = w.seq;
  h.call = w.call;
  h.flags = rsc::kCancel;
  h.thread = threadId();
  sendAll(reinterpret_cast<const uint8_t*>(&h), sizeof(h));  // a broken link: the wait hears of it
  w.sent = true;
  closeSignalWatch(w);
}

// A TSTP, TTIN or TTOU at its default action sent to the job here (not from home,
// whose stops come as SIGSTOP) while it waits: the process stops at once, as it would in
// the kernel's own wait, and CONT makes this wait go on (an answer that came meanwhile
// waits on the connection: nothing read twice or lost). The signal is taken and the
// process stopped with SIGSTOP, as shadowd does with one from home: left to the kernel,
// it would be dropped, the job's process group here being orphaned. False if none is
// pending (another thread took it).
bool stopForSignal() {
  uint64_t stops = signalsThatStop();
  siginfo_t info;
  struct timespec now = {0, 0};
  if (stops == 0 || rawSyscall(SYS_rt_sigtimedwait, reinterpret_cast<long>(&stops), reinterpret_cast<long>(&info),
                                reinterpret_cast<long>(&now), 8) <= 0) {
    return false;
  }
  rawSyscall(SYS_kill, rawSyscall(SYS_getpid), SIGSTOP);
  return true;
}

// poll looks its fds up anew at each wake-up, so a wait holds the numbers (SlotUse) a
// slice at a time: a move of one waits for the slice to end, not for the answer.
constexpr int kSliceMs = 50;

long waitReadable(int timeoutMs, SignalWatch* watch) {
  if (timeoutMs != kCheckpointable) {
    for (int left = timeoutMs;;) {  // -1: no end
      const int slice = left >= 0 && left < kSliceMs ? left : kSliceMs;
      long ready;
      {
        const SlotUse conn = useConnection();
        struct pollfd pfd = {conn.fd(), POLLIN, 0};
        ready = conn.fd() < 0 ? -EBADF : rawSyscall(SYS_poll, reinterpret_cast<long>(&pfd), 1, slice);
      }
      if (ready != 0 || left == slice) return ready;
      if (left > 0) left -= slice;
    }
  }
  const uint64_t blocked = ~(signalBit(shim::kCheckpointSignal) | signalsThatEnd());
  for (;;) {
    const bool watching = watch != nullptr && !watch->sent && watchedSignals() != 0;
    const bool inGrace = watching && watch->fd < 0;
    struct timespec slice = {0, inGrace ? kSignalGraceNs : kSliceMs * 1000000L};
    struct pollfd pfd[2] = {{-1, POLLIN, 0}, {-1, POLLIN, 0}};
    long ready;
    {
      const SlotUse conn = useConnection();
      const SlotUse signals(watching ? watch->slot : 0, watching ? watch->fd : -1);  // poll passes over -1
      if (conn.fd() < 0) return haveConnection() ? -EBADF : kMoved;
      pfd[0].fd = conn.fd();
      pfd[1].fd = signals.fd();
      ready = rawSyscall(SYS_ppoll, reinterpret_cast<long>(pfd), 2, reinterpret_cast<long>(&slice),
                        reinterpret_cast<long>(&blocked), 8);
    }
    if (ready == -EINTR && !haveConnection()) {
      shim::t_checkpointInterrupted = 0;  // this wait takes care of it: no sleep must restart
      return kMoved;
    }
    if (ready == 0 && inGrace) {
      if (!openSignalWatch(*watch)) watch = nullptr;
      continue;
    }
    if (ready == 0) continue;  // a slice is over: the numbers are taken anew
    if (ready > 0 && pfd[0].revents == 0 && pfd[1].revents != 0) {
      if (!stopForSignal()) sendCancel(*watch);
      continue;
    }
    return ready;
  }
}

// `arrived`: the bytes are likely there already (a reply's body, sent with its
// header), so a recv is tried before the wait: one ppoll less a forwarded read.
long recvExact(uint8_t* p, uint64_t n, int timeoutMs, SignalWatch* watch = nullptr, bool arrived = false) {
  while (n > 0) {
    if (!arrived) {
      long ready = waitReadable(timeoutMs, watch);
      if (ready == kMoved) return kMoved;
      if (ready == -EINTR) continue;
      if (ready == 0) return -ETIMEDOUT;
      if (ready < 0) return ready;
    }
    arrived = false;
    long r;
    {
      const SlotUse conn = useConnection();
      r = rawSyscall(SYS_recvfrom, conn.fd(), reinterpret_cast<long>(p), static_cast<long>(n), MSG_DONTWAIT, 0, 0);
    }
    if (r == -EINTR || r == -EAGAIN) continue;
    if (r == 0) return -ECONNRESET;
    if (r < 0) return r;
    p += r;
    n -= static_cast<uint64_t>(r);
  }
  return 0;
}

void dropMine() {
  if (!haveConnection()) return;
  closeSlot(t_connSlot, t_conn);
  t_connSlot = 0;
  t_connGen = 0;
}

long connectRelay() {
  State& s = state();
  t_connSlot = 0;  // a checkpoint may have emptied the old slot, and another thread taken it
  long fd = rawSyscall(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fd;
  t_conn = static_cast<int>(shim::placeOwnFd(fd));  // where the control socket is (shim/own_fds.h)
  t_connSlot = claimSlot(t_conn);                    // guarded from here on
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  static_assert(sizeof(addr.sun_path) == sizeof(s.config.relaySocket));
  for (size_t i = 0; i + 1 < sizeof(addr.sun_path); ++i) addr.sun_path[i] = s.config.relaySocket[i];
  long r;
  {
    const SlotUse conn = useConnection();
    r = rawSyscall(SYS_connect, conn.fd(), reinterpret_cast<long>(&addr), sizeof(addr));
    struct timeval tv = {kReplyTimeoutMs / 1000, 0};
    if (r == 0) {
      r = rawSyscall(SYS_setsockopt, conn.fd(), SOL_SOCKET, SO_SNDTIMEO, reinterpret_cast<long>(&tv), sizeof(tv));
    }
  }
  if (r == 0) {
    Hello hello{};
    hello.magic = kHelloMagic;
    hello.length = sizeof(hello);
    hello.jobId = s.config.jobId;
    hello.order = s.pipelineOrder.load(std::memory_order_acquire);
    hello.kind = ownTable() ? kBornAwayCalls : kCallConnection;
    for (size_t i = 0; i < sizeof(hello.token); ++i) hello.token[i] = s.config.token[i];
    r = sendAll(reinterpret_cast<const uint8_t*>(&hello), sizeof(hello));
  }
  if (r != 0) {
    closeSlot(t_connSlot, t_conn);
    t_connSlot = 0;
    return r;
  }
  t_connGen = s.generation.load(std::memory_order_acquire);
  return 0;
}

bool ensureBuffer() {
  if (t_buf != nullptr) return true;
  long m = rawSyscall(SYS_mmap, 0, kBufferSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m < 0) return false;
  t_buf = reinterpret_cast<uint8_t*>(m);
  return true;
}

// A deferred failure of one of this thread's pipelined writes: kept for the next
// write, sync or close of its fd. The first one counts; later writes to a broken fd
// fail alike, and those issued before its report are not told again.
void noteFailure(const rsc::ReplyHeader& h) {
  if (h.result + 1 == t_reportedFd && h.seq <= t_reportedSeq) return;
  if (t_failedFd == 0) {
    t_failedFd = h.result + 1;
    t_failedError = h.error > 0 ? h.error : EIO;
  }
}

// The errno (negative) of a failed pipelined write to fd, reported once; 0 if none.
long takeFailure(int64_t fd) {
  if (t_failedFd == 0 || t_failedFd != fd + 1) return 0;
  t_failedFd = 0;
  t_reportedFd = t_seenFd = fd + 1;
  t_reportedSeq = t_seq;
  return -static_cast<long>(t_failedError);
}

// The pipelined writes a call runs after at home (rsc::writesToWaitFor, rsc::namesStream): the number
// of the last one it waits for, 0 for none. `flags` gets kFileWrite when those are the
// writes to files only: the relay then runs it past a stream's writes still waiting
// (a full pipe at home), which it need not see.
uint64_t writesBefore(const rsc::Row& row, const int64_t args[6], uint32_t& flags) {
  const bool streams = rsc::namesStream(row, args, [](int64_t fd) { return isStreamFd(state(), fdArg(fd)); });
  switch (rsc::writesToWaitFor(row, streams)) {
    case rsc::WaitFor::AllWrites: return state().pipelineOrder.load(std::memory_order_acquire);
    case rsc::WaitFor::FileWrites: flags |= rsc::kFileWrite; return state().fileWriteOrder.load(std::memory_order_acquire);
    case rsc::WaitFor::Nothing: return 0;
  }
  return 0;
}

// Reads the header of the reply to the call just sent; deferred failures of earlier
// pipelined writes may come first. 0; kMoved (a checkpoint took the connection
// away: send again); or -EIO, the connection dropped, when the link broke or the
// relay is out of step.
long receiveReplyHeader(rsc::ReplyHeader& h, int timeoutMs, SignalWatch* watch = nullptr) {
  for (;;) {
    long r = recvExact(reinterpret_cast<uint8_t*>(&h), sizeof(h), timeoutMs, watch);
    if (r == kMoved) return kMoved;
    if (r != 0 || h.magic != rsc::kReplyMagic) {
      dropMine();
      return -EIO;
    }
    if (!(h.flags & rsc::kDeferredFailure)) return 0;
    noteFailure(h);
  }
}

// Takes the deferred failures that have arrived, without waiting: a thread that only
// writes (`yes | head`) must hear of EPIPE.
void collectFailures() {
  rsc::ReplyHeader h;
  for (;;) {
    long r;
    {
      const SlotUse conn = useConnection();
      r = rawSyscall(SYS_recvfrom, conn.fd(), reinterpret_cast<long>(&h), sizeof(h), MSG_DONTWAIT, 0, 0);
    }
    if (r <= 0) return;  // nothing waiting (EAGAIN), or the link broke: the send will tell
    if (r < static_cast<long>(sizeof(h)) &&
        recvExact(reinterpret_cast<uint8_t*>(&h) + r, sizeof(h) - static_cast<uint64_t>(r), kReplyTimeoutMs) != 0) {
      return;
    }
    if (h.magic == rsc::kReplyMagic && (h.flags & rsc::kDeferredFailure)) noteFailure(h);
  }
}

}  // namespace

bool isConnectionFd(int64_t fd) {
  const State& s = state();
  const uint32_t used = s.connectionSlots.load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < used && i < kMaxConnections; ++i) {
    if (slotHolds(s.connections[i].load(std::memory_order_relaxed), fd)) return true;
  }
  return false;
}

// How long a move waits for a call of the fd's thread to be done with the number: a
// wait for an answer holds it one slice at a time (kSliceMs), a send into a full
// socket until the relay takes the bytes. Longer only when that thread is parked by
// a checkpoint inside its call, which itself waits for the mover's handler to end.
constexpr long kMoveWaitNs = 2000L * 1000 * 1000;

static long monotonicNs() {
  struct timespec now {};
  rawSyscall(SYS_clock_gettime, CLOCK_MONOTONIC, reinterpret_cast<long>(&now));
  return now.tv_sec * 1000000000L + now.tv_nsec;
}

bool moveConnectionFd(int32_t fd) {
  State& s = state();
  const uint32_t used = s.connectionSlots.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < used && i < kMaxConnections; ++i) {
    std::atomic<uint64_t>& word = s.connections[i];
    uint64_t v = word.load(std::memory_order_acquire);
    if (!slotHolds(v, fd)) continue;
    // Its thread's next call takes a copy...
    long copy = -1;
    bool swapped = false;
    if (slotFd(v) == fd) {
      copy = shim::copyOwnFd(fd);
      if (copy < 0) return false;
      while (slotFd(v) == fd && !(swapped = word.compare_exchange_weak(v, slotWord(copy, slotBusy(v))))) {
      }
      if (!swapped) rawSyscall(SYS_close, copy);  // its thread closed it meanwhile
    }
    // ...and a call that took the old number before the swap is waited for.
    const long deadline = monotonicNs() + kMoveWaitNs;
    for (v = word.load(std::memory_order_acquire); slotBusy(v) == fd; v = word.load(std::memory_order_acquire)) {
      if (monotonicNs() > deadline) {
        // Given up: the slot back as it was, the program's call refused.
        if (!swapped || slotFd(v) != copy) return false;
        if (word.compare_exchange_strong(v, slotWord(fd, fd))) {
          rawSyscall(SYS_close, copy);
          return false;
        }
        continue;  // it changed meanwhile: look again
      }
      struct timespec pause = {0, 200 * 1000};
      rawSyscall(SYS_nanosleep, reinterpret_cast<long>(&pause), 0);
    }
    return true;
  }
  return true;  // not (or no longer) ours
}

// MIG_LOG (shim/log.h): a forwarded call, its first arguments and what home answered.
static long logged(const rsc::Row& row, const int64_t args[6], long result, const char* how = "") {
  if (shim::logging()) {
    shim::LogLine() << "forwarded home" << how << ": " << row.function << "(" << args[0] << ", " << args[1]
                    << ", ...) = " << static_cast<int64_t>(result);
  }
  return result;
}

// rsc::kNoTtin (kNoTtou) for a call on which the kernel would stop a background group
// with SIGTTIN (SIGTTOU: a write, TOSTOP set) while that signal is ignored or blocked
// here: at home, such a read of the terminal then fails EIO, such a write goes on.
static uint32_t noTerminalStop(const rsc::Row& row) {
  const int sig = rsc::terminalStopSignal(row);
  return sig != 0 && !(watchedSignals() & signalBit(sig)) ? rsc::kNoTtin : 0;
}

// Sends the call and takes its answer; see forwardCallOnce.
static long exchange(const rsc::Row& row, const int64_t args[6], uint64_t seq, int timeout, SignalWatch* watch) {
  rsc::ReplyHeader h;
  uint32_t flags = 0;
  for (;; flags = rsc::kAgain) {  // once, or again from the next host after a checkpoint (same seq)
    if (watch != nullptr) {
      closeSignalWatch(*watch);
      watch->sent = false;  // a cancel sent before a checkpoint may not have reached home: again
    }
    if (!haveConnection() && connectRelay() != 0) return -EIO;
    uint32_t lane = 0;
    const uint64_t order = writesBefore(row, args, lane);
    int64_t len = rsc::encodeRequest(row, args, seq, flags | lane | noTerminalStop(row), t_buf, kBufferSize, order, threadId());
    if (len < 0) return len;
    if (sendAll(t_buf, static_cast<uint64_t>(len)) != 0) {
      dropMine();
      return -EIO;
    }
    long got = receiveReplyHeader(h, timeout, watch);
    // Resumed back home (homecoming.h): no deputy to send it to any more.
    if (got == kMoved && state().status.load(std::memory_order_acquire) != kActive) {
      return answerAfterHomecoming(row, args, seq, threadId(), t_buf, kBufferSize);
    }
    if (got == kMoved) continue;
    if (got != 0) return -EIO;
    __builtin_memcpy(t_buf, &h, sizeof(h));  // decodeReply reads the whole reply from t_buf
    if (h.seq != seq || h.length < sizeof(h) || h.length > rsc::replyCapacity(row, args)) break;
    got = recvExact(t_buf + sizeof(h), h.length - sizeof(h), timeout, nullptr, true);
    if (got == kMoved && state().status.load(std::memory_order_acquire) != kActive) {
      return answerAfterHomecoming(row, args, seq, threadId(), t_buf, kBufferSize);
    }
    if (got == kMoved) continue;
    if (got != 0) break;
    int32_t error = 0;
    int64_t r = rsc::decodeReply(row, args, seq, t_buf, h.length, &error);
    return r == -1 ? -static_cast<long>(error) : static_cast<long>(r);
  }
  dropMine();  // out of step with the relay: start over on a new connection
  return -EIO;
}

static long forwardCallOnce(const rsc::Row& row, const int64_t args[6], bool patient) {
  if (!ensureBuffer()) return -ENOMEM;
  const uint64_t seq = ++t_seq;
  const int timeout = patient ? kCheckpointable : kReplyTimeoutMs;
  SignalWatch watch{seq, static_cast<uint32_t>(row.id)};
  const long r = exchange(row, args, seq, timeout, patient ? &watch : nullptr);
  closeSignalWatch(watch);
  t_signalCancel = watch.sent && r == -EINTR;
  // fsync, fdatasync, close: run after the writes before them (their failures came
  // first on this connection), then tell one (a close closed the fd all the same).
  const long failed = row.has(rsc::kReportsWriteFailures) ? takeFailure(args[0]) : 0;
  return failed != 0 ? failed : r;
}

long forwardCall(const rsc::Row& row, const int64_t args[6], bool patient) {
  return logged(row, args, forwardCallOnce(row, args, patient));
}

static long forwardPipelinedWriteOnce(const rsc::Row& row, const int64_t args[6], bool firstPiece) {
  if (!ensureBuffer()) return -ENOMEM;
  if (!haveConnection() && connectRelay() != 0) return -EIO;
  collectFailures();
  if (long failed = firstPiece ? takeFailure(args[0]) : 0; failed != 0) return failed;
  const uint64_t seq = ++t_seq;
  State& s = state();
  const uint64_t order = s.pipelineOrder.fetch_add(1, std::memory_order_acq_rel) + 1;
  uint32_t flags = rsc::kNoReply | noTerminalStop(row);
  if (!isStreamFd(s, fdArg(args[0]))) {  // write-behind: later calls wait for it
    flags |= rsc::kFileWrite;
    uint64_t last = s.fileWriteOrder.load(std::memory_order_acquire);
    while (last < order && !s.fileWriteOrder.compare_exchange_weak(last, order, std::memory_order_acq_rel)) {
    }
  }
  if (t_seenFd == args[0] + 1) {
    flags |= rsc::kFailureSeen;
    t_seenFd = 0;
  }
  int64_t len = rsc::encodeRequest(row, args, seq, flags, t_buf, kBufferSize, order, threadId());
  if (len < 0) return len;
  if (sendAll(t_buf, static_cast<uint64_t>(len)) != 0) {
    dropMine();
    return -EIO;
  }
  return static_cast<long>(args[2]);
}

long forwardPipelinedWrite(const rsc::Row& row, const int64_t args[6], bool firstPiece) {
  return logged(row, args, forwardPipelinedWriteOnce(row, args, firstPiece), " (pipelined)");
}

// Asked even when no write was pipelined: the relay answers it also once the reads it
// served from pushed bytes are taken at home (shadow/pushed_reads.h), so the image
// never leaves with bytes it read that home would give out again.
bool drainPipelinedWrites() {
  const rsc::Row* row = &rsc::rowOf(rsc::CallId::Getppid);
  const int64_t none[6] = {};
  if (row == nullptr || !ensureBuffer() || (!haveConnection() && connectRelay() != 0)) return false;
  const uint64_t seq = ++t_seq;
  int64_t len = rsc::encodeRequest(*row, none, seq, rsc::kBarrier, t_buf, kBufferSize,
                                   state().pipelineOrder.load(std::memory_order_acquire));
  rsc::ReplyHeader h;
  if (len < 0 || sendAll(t_buf, static_cast<uint64_t>(len)) != 0 || receiveReplyHeader(h, -1) != 0 ||
      h.seq != seq || h.length != sizeof(h)) {
    dropMine();
    return false;
  }
  return true;
}

bool takeSignalCancel() {
  const bool was = t_signalCancel;
  t_signalCancel = false;
  return was;
}

bool connectNow() { return haveConnection() || connectRelay() == 0; }

void releaseThreadConnection() {
  dropMine();
  if (t_buf != nullptr) {
    rawSyscall(SYS_munmap, reinterpret_cast<long>(t_buf), kBufferSize);
    t_buf = nullptr;
  }
}

void dropAllConnections(bool close) {
  State& s = state();
  for (uint32_t i = 0; i < kMaxConnections; ++i) {
    const uint64_t word = s.connections[i].exchange(0);
    if (!close) continue;
    if (slotFd(word) >= 0) rawSyscall(SYS_close, slotFd(word));
    // A move's old number its thread's call still used (a fork's child takes the
    // table as it was then; a checkpoint comes only after the move's end).
    if (slotBusy(word) >= 0 && slotBusy(word) != slotFd(word)) rawSyscall(SYS_close, slotBusy(word));
  }
  s.generation.fetch_add(1);
}

}  // namespace mig::forward
