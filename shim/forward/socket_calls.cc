// Socket calls on home fds that take more than marshalling their row (see
// trapped_call.h): results whose length the caller gives (addresses, options), calls
// that make a new home socket, and the message calls (sendmsg, recvmsg and their
// batch forms), which have no row of their own and go home as sendto/recvfrom.
// Runs in the SIGSYS handler: raw system calls, no allocation but mmap.
#include "shim/forward/trapped_call.h"

#include "rsc/call_policy.h"
#include "shim/forward/child_table.h"
#include "shim/forward/readiness_stand_in.h"
#include "shim/forward/state.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>

namespace mig::forward {
namespace {

using rsc::CallId;

State& state() { return shim::g_runtime.forward; }

using rsc::rowOf;

// A socket address from home, whole, into the caller's buffer of *len bytes: what
// fits, and the real length, as the kernel does.
void giveName(const struct sockaddr_storage& name, socklen_t got, int64_t addr, int64_t lenPtr) {
  auto* len = reinterpret_cast<socklen_t*>(lenPtr);
  const socklen_t room = *len < got ? *len : got;
  __builtin_memcpy(reinterpret_cast<void*>(addr), &name, room);
  *len = got;
}

// getsockname/getpeername of a socket at home.
long socketName(const rsc::Row& row, int64_t homeFd, int64_t addr, int64_t lenPtr) {
  struct sockaddr_storage name {};
  socklen_t got = sizeof(name);
  const int64_t args[6] = {homeFd, reinterpret_cast<int64_t>(&name), reinterpret_cast<int64_t>(&got), 0, 0, 0};
  long r = forwardRow(row, args);
  if (r >= 0) giveName(name, got, addr, lenPtr);
  return r;
}

// getsockopt on a socket at home: the value comes back whole (kSockoptSize), the
// caller gets what its length allows and the length given, as the kernel does.
long socketOption(const rsc::Row& row, const int64_t home[6], int64_t value, int64_t lenPtr) {
  if (value == 0 || lenPtr == 0) return -EFAULT;
  uint8_t got[rsc::kSockoptSize] = {};
  socklen_t gotLen = sizeof(got);
  const int64_t args[6] = {home[0], home[1], home[2], reinterpret_cast<int64_t>(got), reinterpret_cast<int64_t>(&gotLen), 0};
  long r = forwardRow(row, args);
  if (r < 0) return r;
  auto* len = reinterpret_cast<socklen_t*>(lenPtr);
  const socklen_t room = *len < gotLen ? *len : gotLen;
  __builtin_memcpy(reinterpret_cast<void*>(value), got, room);
  *len = room;
  return r;
}

// recvfrom on a socket at home, with the source address if the caller wants it.
long recvFrom(const rsc::Row& row, const int64_t home[6]) {
  struct sockaddr_storage from {};
  socklen_t got = sizeof(from);
  const int64_t args[6] = {home[0], home[1], home[2], home[3], reinterpret_cast<int64_t>(&from),
                           reinterpret_cast<int64_t>(&got)};
  long r = forwardRow(row, args);
  if (r >= 0 && home[4] != 0 && home[5] != 0) giveName(from, got, home[4], home[5]);
  return r;
}

// A socket made at home (socket, accept): a new home fd, mirrored like an opened file.
// Its calls may wait as long as the network likes (a stream fd); its writes are
// pipelined unless it is non-blocking; its stand-in tells readiness, for event loops
// (if the relay cannot take one, /dev/null stays and blocking calls still work).
// `flags`: SOCK_NONBLOCK, SOCK_CLOEXEC.
long newHomeSocket(const rsc::Row& row, const int64_t home[6], int64_t flags) {
  long fd = newFdForwarded(row, home, flags & SOCK_CLOEXEC);
  if (fd < 0) return fd;
  State& s = state();
  setStreamFd(s, fd);
  if (!ownTable()) setPipelinedFd(s, fd, !(flags & SOCK_NONBLOCK));
  long standIn = openReadinessStandIn(s.config, homeFdOf(static_cast<int32_t>(fd)), SOCK_CLOEXEC);
  if (standIn >= 0) {
    runLocally(SYS_dup3, standIn, fd, (flags & SOCK_CLOEXEC) ? O_CLOEXEC : 0);
    runLocally(SYS_close, standIn);
  }
  return fd;
}

// accept/accept4 on a listening socket at home. The peer's address is asked for
// afterwards (getpeername at home).
long acceptForwarded(const rsc::Row& row, const int64_t home[6], const int64_t* a) {
  long fd = newHomeSocket(row, home, rsc::newSocketFlags(row, a));
  if (fd < 0) return fd;
  if (a[1] != 0 && a[2] != 0) {
    if (socketName(rowOf(CallId::Getpeername), homeFdOf(static_cast<int32_t>(fd)), a[1], a[2]) < 0) *reinterpret_cast<socklen_t*>(a[2]) = 0;
  }
  return fd;
}


// --- sendmsg, recvmsg, sendmmsg, recvmmsg ---------------------------------------

// Scratch memory for gathering or scattering a message of several buffers, mapped
// for the call (a datagram must go out, and come in, whole).
class Scratch {
 public:
  explicit Scratch(uint64_t size) : size_(size) {
    long m = shim::rawSyscall(SYS_mmap, 0, static_cast<long>(size), PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    p_ = m < 0 ? nullptr : reinterpret_cast<uint8_t*>(m);
  }
  ~Scratch() {
    if (p_ != nullptr) shim::rawSyscall(SYS_munmap, reinterpret_cast<long>(p_), static_cast<long>(size_));
  }
  uint8_t* get() const { return p_; }

 private:
  uint64_t size_;
  uint8_t* p_;
};

uint64_t totalLength(const struct msghdr& m) {
  uint64_t n = 0;
  for (size_t i = 0; i < m.msg_iovlen; ++i) n += m.msg_iov[i].iov_len;
  return n;
}

// The longest message gathered into one sendto (a datagram is at most 64 KiB; a
// longer stream message goes buffer by buffer, which a stream does not notice).
constexpr uint64_t kMaxGathered = 1 << 16;

long sendMessage(int64_t homeFd, const struct msghdr& m, int64_t flags) {
  if (m.msg_controllen != 0) return -EOPNOTSUPP;  // ancillary data does not travel home
  const int64_t name = reinterpret_cast<int64_t>(m.msg_name), nameLen = m.msg_name != nullptr ? m.msg_namelen : 0;
  const uint64_t total = totalLength(m);
  if (m.msg_iovlen == 1 || total > kMaxGathered) {
    int64_t sent = 0;
    for (size_t i = 0; i < m.msg_iovlen; ++i) {
      if (m.msg_iov[i].iov_len == 0 && m.msg_iovlen > 1) continue;
      const int64_t len = static_cast<int64_t>(m.msg_iov[i].iov_len);
      const int64_t args[6] = {homeFd, reinterpret_cast<int64_t>(m.msg_iov[i].iov_base), len, flags, name, nameLen};
      long r = forwardRow(rowOf(CallId::Sendto), args);
      if (r < 0) return sent > 0 ? sent : r;
      sent += r;
      if (r < len) break;
    }
    return sent;
  }
  Scratch buf(total);
  if (buf.get() == nullptr) return -ENOMEM;
  uint64_t at = 0;
  for (size_t i = 0; i < m.msg_iovlen; ++i) {
    __builtin_memcpy(buf.get() + at, m.msg_iov[i].iov_base, m.msg_iov[i].iov_len);
    at += m.msg_iov[i].iov_len;
  }
  const int64_t args[6] = {homeFd, reinterpret_cast<int64_t>(buf.get()), static_cast<int64_t>(total), flags, name, nameLen};
  return forwardRow(rowOf(CallId::Sendto), args);
}

long receiveMessage(int64_t homeFd, struct msghdr& m, int64_t flags) {
  m.msg_controllen = 0;  // no ancillary data comes from home
  m.msg_flags = 0;
  const int64_t name = reinterpret_cast<int64_t>(m.msg_name);
  const int64_t nameLen = m.msg_name != nullptr ? reinterpret_cast<int64_t>(&m.msg_namelen) : 0;
  if (m.msg_iovlen <= 1) {
    const int64_t home[6] = {homeFd, m.msg_iovlen == 1 ? reinterpret_cast<int64_t>(m.msg_iov[0].iov_base) : 0,
                             m.msg_iovlen == 1 ? static_cast<int64_t>(m.msg_iov[0].iov_len) : 0, flags, name, nameLen};
    return recvFrom(rowOf(CallId::Recvfrom), home);
  }
  const uint64_t total = totalLength(m);
  Scratch buf(total > 0 ? total : 1);
  if (buf.get() == nullptr) return -ENOMEM;
  const int64_t home[6] = {homeFd, reinterpret_cast<int64_t>(buf.get()), static_cast<int64_t>(total), flags, name, nameLen};
  long r = recvFrom(rowOf(CallId::Recvfrom), home);
  uint64_t left = r > 0 ? static_cast<uint64_t>(r) : 0, at = 0;
  for (size_t i = 0; i < m.msg_iovlen && left > 0; ++i) {
    const uint64_t n = m.msg_iov[i].iov_len < left ? m.msg_iov[i].iov_len : left;
    __builtin_memcpy(m.msg_iov[i].iov_base, buf.get() + at, n);
    at += n;
    left -= n;
  }
  return r;
}

}  // namespace

long homeSocketRow(const rsc::Row& r, const int64_t home[6], const int64_t* a) {
  switch (r.handler) {
    case rsc::Handler::NewSocket: return newHomeSocket(r, home, rsc::newSocketFlags(r, a));
    case rsc::Handler::Accept: return acceptForwarded(r, home, a);
    case rsc::Handler::Receive: return recvFrom(r, home);
    case rsc::Handler::SocketOption: return socketOption(r, home, a[3], a[4]);
    case rsc::Handler::SocketName:
      if (a[1] == 0 || a[2] == 0) return -EFAULT;
      return socketName(r, home[0], a[1], a[2]);
    default: return forwardRow(r, home);
  }
}

long forwardMessageCall(const TrappedCall& c) {
  const int32_t fd = fdArg(c.a[0]);
  const int64_t homeFd = homeFdOf(fd);
  const int64_t flags = c.a[2];
  const bool receiving = c.nr == SYS_recvmsg || c.nr == SYS_recvmmsg;
  if (receiving) drainReadiness(fd);
  if (c.nr == SYS_sendmsg) return sendMessage(homeFd, *reinterpret_cast<const struct msghdr*>(c.a[1]), flags);
  if (c.nr == SYS_recvmsg) return receiveMessage(homeFd, *reinterpret_cast<struct msghdr*>(c.a[1]), flags);
  // The batch forms, one message after the other; recvmmsg's timeout is not kept.
  auto* v = reinterpret_cast<struct mmsghdr*>(c.a[1]);
  const uint32_t count = static_cast<uint32_t>(c.a[2]);
  const int64_t each = c.a[3];
  for (uint32_t i = 0; i < count; ++i) {
    int64_t f = each & ~static_cast<int64_t>(MSG_WAITFORONE);
    if (receiving && (each & MSG_WAITFORONE) && i > 0) f |= MSG_DONTWAIT;
    long r = receiving ? receiveMessage(homeFd, v[i].msg_hdr, f) : sendMessage(homeFd, v[i].msg_hdr, f);
    if (r < 0) return i > 0 ? static_cast<long>(i) : r;
    v[i].msg_len = static_cast<unsigned>(r);
  }
  return count;
}

}  // namespace mig::forward
