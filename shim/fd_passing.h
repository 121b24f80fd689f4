// Passing one file descriptor over a Unix socket (SCM_RIGHTS) with a small payload.
// Header only, without allocation, exceptions or libc state, so the shim's control
// thread, migctl, the capture side and the tests share one copy. The freestanding
// restorer cannot include libc headers and keeps its own (restore/linux_abi.h).
#pragma once

#include <cstddef>
#include <cstring>
#include <sys/socket.h>
#include <sys/types.h>

namespace mig::control {

// Sends len bytes of data with fd attached; fd < 0 sends the data alone. Returns what
// sendmsg returns.
inline ssize_t sendFd(int sock, int fd, const void* data, size_t len, int flags = 0) {
  struct iovec iov = {const_cast<void*>(data), len};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  return sendmsg(sock, &msg, flags);
}

// Receives up to len bytes into data and the fd sent with them, close-on-exec, into
// *fd (-1 when none came; the kernel closes any beyond the first). Returns what
// recvmsg returns.
inline ssize_t receiveFd(int sock, void* data, size_t len, int* fd) {
  struct iovec iov = {data, len};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  *fd = -1;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); n > 0 && c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(fd, CMSG_DATA(c), sizeof(int));
  }
  return n;
}

}  // namespace mig::control
