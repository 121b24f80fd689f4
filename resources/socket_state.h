// What the two socket kinds (inet_socket.cc, unix_socket.cc) share: a copy of the
// process's socket taken with pidfd_getfd (the same ptrace access that reading
// /proc/PID/mem for the checkpoint already needs), the options read from it with
// getsockopt and set again on the new socket, and the two facts only sock_diag
// netlink knows (a listening socket's backlog and a Unix socket's peer).
//
// Why a copy of the fd rather than /proc/PID/net/* or sock_diag alone: getsockopt on
// the very socket gives every option in its exact form, getsockname/getpeername the
// exact addresses (also a Unix path /proc/net/unix would show mangled), and MSG_PEEK
// the bytes in flight of a socketpair, with nothing to parse.
#pragma once

#include "resources/fd_kind.h"

#include <kj/io.h>
#include <kj/string.h>

#include <cstdint>
#include <sys/socket.h>
#include <sys/types.h>

namespace mig::resources::sockets {

// The inode of a "socket:[N]" link target, 0 if it is not a socket.
uint64_t socketInode(const std::string& target);

// A copy of the process's fd `fd` in this process (close-on-exec); null if the kernel
// refuses (no ptrace access, or the fd is gone).
kj::AutoCloseFd copyOf(const CaptureContext& ctx, int fd);

// getsockopt(level, name) as an int; `fallback` where it fails.
int intOption(int fd, int level, int name, int fallback);

// Starts both kinds' capture: a copy of the process's socket p.fd (copyOf; the
// checkpoint fails with one line naming the fd when there is none), returned, from
// which it fills the generic part of the socket group: family, type, protocol, local
// and peer addresses, inode, and the options that differ from those of a fresh socket
// of the same family, type and protocol (made here to compare with: a buffer size set
// by the kernel's default is not set again, which would stop its autotuning).
kj::AutoCloseFd captureCommon(const FdProbe& p, const CaptureContext& ctx, FdRecord::Builder out);

// "127.0.0.1:8080", "[::1]:53", "/run/x.sock", "@abstract", "(unnamed)".
kj::String describe(kj::ArrayPtr<const kj::byte> sockaddr);

// Restart side: a new socket like the saved one (close-on-exec), its saved options set
// (one that the kernel refuses here is a warning on ctx.warnFd).
kj::AutoCloseFd newSocket(FdRecord::Reader f, RestoreContext& ctx);

// Sets the saved options on `fd` (newSocket does it for the sockets it makes).
void setSavedOptions(int fd, FdRecord::Reader f, RestoreContext& ctx);

// Binds `fd` to the saved local address; fails the restart with one line naming the
// fd and the address. A TCP port held only by the ended process's connections in
// TIME_WAIT is taken back (SO_REUSEADDR for the bind, TCP repair mode where that is
// not enough and CAP_NET_ADMIN allows it).
void bindSaved(int fd, FdRecord::Reader f);

// listen(2) with the saved backlog (SOMAXCONN where it is unknown).
void listenSaved(int fd, FdRecord::Reader f);

// Sets O_NONBLOCK as saved and puts the socket at its number.
void placeSaved(kj::AutoCloseFd fd, FdRecord::Reader f);

// A socket that is not one end of a connection, as saved: new (newSocket), bound
// unless it was unbound, listening if it was; the caller places it. With
// `mayStayUnbound` a bind that fails is a warning on ctx.warnFd, and the socket stays
// unbound, rather than the end of the restart.
kj::AutoCloseFd restoreUnconnected(FdRecord::Reader f, RestoreContext& ctx, bool mayStayUnbound = false);

// Sets SO_LINGER {on, 0} on the process's fds `fds` (TCP connections), so that when it
// ends its peers get a reset rather than an orderly end of stream that could pass for
// a complete answer: `checkpoint --stop` of a connection the image cannot hold.
// Returns how many were set.
int resetOnExit(pid_t pid, kj::ArrayPtr<const int> fds);

// sock_diag answers; false where the kernel gives none (no such socket, or
// sock_diag is missing).
struct DiagInfo {
  uint32_t backlog = 0;    // a listening socket's listen(2) backlog
  uint32_t pending = 0;    // connections waiting in its accept queue
  uint64_t peerInode = 0;  // a Unix socket's peer, 0 if none
  uint8_t state = 0;       // TCP_LISTEN, TCP_ESTABLISHED, TCP_CLOSE...
};
bool unixDiag(uint64_t inode, DiagInfo& out);
bool tcpListenDiag(int family, uint64_t inode, DiagInfo& out);

}  // namespace mig::resources::sockets
