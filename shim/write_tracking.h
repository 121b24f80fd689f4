// Makes the userfaultfd through which migctl tracks the pages a job writes during a
// pre-copy migration (resources/dirty_pages.h), and the one through which a
// concurrent checkpoint copies a page before the job's first write to it
// (resources/copy_before_write.h). It must be made by the job itself:
// a userfaultfd belongs to the address space of the process that creates it. Header
// only and without libc state, so the shim's control thread and the tests share it.
#pragma once

#include <cerrno>
#include <cstdint>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mig::control {

inline constexpr uint64_t kUffdWpAsync = 1ull << 15;  // UFFD_FEATURE_WP_ASYNC (Linux 6.7)

// Returns the new fd, or -errno: ENOSYS/EPERM (no userfaultfd here, or
// vm.unprivileged_userfaultfd forbids it even for user-mode faults), EINVAL (the
// kernel has no asynchronous write protection).
inline int makeWriteTrackingUffd() {
  // UFFD_USER_MODE_ONLY: allowed without privilege; with WP_ASYNC no fault is ever
  // handed to user space anyway, so kernel-mode writes behave as user-mode ones.
  long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
  if (fd < 0) return -errno;
  struct uffdio_api api {};
  api.api = UFFD_API;
  api.features = kUffdWpAsync;
  if (ioctl(static_cast<int>(fd), UFFDIO_API, &api) != 0 || !(api.features & kUffdWpAsync)) {
    int err = errno != 0 ? errno : EINVAL;
    close(static_cast<int>(fd));
    return -err;
  }
  return static_cast<int>(fd);
}

// Concurrent checkpoint: synchronous write protection, every write fault handed to
// migctl, which copies the page and lets the write go on. Not UFFD_USER_MODE_ONLY: a
// write by the kernel (read() into a protected buffer) must wait for migctl like a
// user-mode one, not fail with EFAULT; so this needs CAP_SYS_PTRACE, or
// vm.unprivileged_userfaultfd = 1, or access to /dev/userfaultfd. The events of memory
// that goes away (munmap, madvise(MADV_DONTNEED), mremap) tell migctl that a page it
// had not copied yet is lost. Returns the new fd or -errno.
inline int makeCopyOnWriteUffd() {
  long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    long dev = syscall(SYS_openat, AT_FDCWD, "/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0) return -err;
    fd = ioctl(static_cast<int>(dev), USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) err = errno;
    close(static_cast<int>(dev));
    if (fd < 0) return -err;
  }
  struct uffdio_api api {};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;
  if (ioctl(static_cast<int>(fd), UFFDIO_API, &api) != 0 || !(api.ioctls & (1ull << _UFFDIO_REGISTER))) {
    int err = errno != 0 ? errno : EINVAL;
    close(static_cast<int>(fd));
    return -err;
  }
  return static_cast<int>(fd);
}

}  // namespace mig::control
