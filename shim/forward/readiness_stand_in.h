// The local stand-in of a home fd that can become readable (a socket, a pipe's read
// end, a terminal) after a migration: instead of /dev/null, a Unix stream connection
// to the local relay, which asks the deputy to watch the real fd at home. Whenever
// the real fd is readable and nobody has been told, the deputy has the relay write a
// token byte into the connection, so poll, select and epoll on the stand-in say
// "readable" when the fd at home is: an event loop (libuv, redis' ae, nginx) keeps
// running on fds that stay at home. The data itself never passes through the
// stand-in: reads go home as forwarded calls, so no byte is ever in flight here when
// the job is checkpointed, and nothing is lost or doubled by a migration.
//
// The protocol, kept by three parties:
//   - the shim drains the tokens (drainReadiness) before it forwards a call that takes
//     input from the fd (rsc::kTakesInput in its row: read, recv, accept);
//   - the deputy sends one token when the fd is readable, then no other until a call
//     that takes input from the same open file has run; after it, if the fd is still
//     readable, it sends the next one, and it answers that call only once every
//     token it sent is in the connection (the relay's answer to each says so). So
//     the drain before the next such call takes them all: a token sent for bytes a
//     read then took (python's Pool reads a message's header and body in two reads
//     after one poll) never reaches a poll after that read's answer, where a
//     blocking read would wait for bytes that are gone;
//   - the relay writes each token into the connection, answers the deputy once it is
//     written, and ends its watch when the connection ends (every copy of the
//     stand-in closed: the job closed the fd, or was checkpointed).
// A token can still outlive the readiness it announced when the deputy sent it on
// its own (the bytes arrived at home) after the shim's drain and the read then took
// those bytes, or when another process took them (as with a local pipe): the job may
// see a spurious wakeup, which non-blocking code takes as EAGAIN. Writability is not
// relayed: the stand-in is always writable.
//
// migctl restart places these stand-ins before the restore (so epoll registrations
// of home fds come back on them); the shim makes them for sockets accepted at home.
// Raw system calls only: this runs in the SIGSYS handler too.
#pragma once

#include "shim/forward/forward_config.h"
#include "shim/raw_syscall.h"

#include <cerrno>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

namespace mig::forward {

// A new stand-in for home fd `homeFd` (a new fd, negative errno on failure). `flags`:
// SOCK_CLOEXEC or 0.
inline long openReadinessStandIn(const Config& c, int32_t homeFd, int flags) {
  using shim::rawSyscall;
  long fd = rawSyscall(SYS_socket, AF_UNIX, SOCK_STREAM | flags, 0);
  if (fd < 0) return fd;
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  static_assert(sizeof(addr.sun_path) == sizeof(c.relaySocket));
  for (size_t i = 0; i + 1 < sizeof(addr.sun_path); ++i) addr.sun_path[i] = c.relaySocket[i];
  long r = rawSyscall(SYS_connect, fd, reinterpret_cast<long>(&addr), sizeof(addr));
  Hello hello{};
  hello.magic = kHelloMagic;
  hello.length = sizeof(hello);
  hello.jobId = c.jobId;
  for (size_t i = 0; i < sizeof(hello.token); ++i) hello.token[i] = c.token[i];
  hello.kind = kReadinessStandIn;
  hello.fd = homeFd;
  // The hello fits in an empty socket buffer: one send takes it whole.
  if (r == 0) r = rawSyscall(SYS_sendto, fd, reinterpret_cast<long>(&hello), sizeof(hello), MSG_NOSIGNAL, 0, 0);
  if (r >= 0 && r != static_cast<long>(sizeof(hello))) r = -EIO;
  if (r < 0) {
    rawSyscall(SYS_close, fd);
    return r;
  }
  return fd;
}

// Takes the tokens waiting on stand-in `fd` (an fd that is no stand-in of this kind
// answers at once with an error, and is left alone).
inline void drainReadiness(int32_t fd) {
  char tokens[64];
  while (shim::rawSyscall(SYS_recvfrom, fd, reinterpret_cast<long>(tokens), sizeof(tokens), MSG_DONTWAIT, 0, 0) ==
         static_cast<long>(sizeof(tokens))) {
  }
}

}  // namespace mig::forward
