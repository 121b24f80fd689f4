// Walking the numbered entries of a /proc directory (our threads, our fds) with raw
// system calls: no allocation, usable while other threads are parked holding locks.
#pragma once

#include "shim/raw_syscall.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>

namespace mig::shim {

// Calls f(number, dirFd) for each numeric entry of `path` (dirFd: the directory's own
// fd, which a listing of /proc/self/fd includes).
// Returns false if the directory cannot be opened.
template <typename F>
bool forEachNumberedEntry(const char* path, F f) {
  int dir = static_cast<int>(rawSyscall(SYS_open, reinterpret_cast<long>(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir < 0) return false;
  char buf[4096];
  for (;;) {
    long n = rawSyscall(SYS_getdents64, dir, reinterpret_cast<long>(buf), sizeof(buf));
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      auto* d = reinterpret_cast<struct dirent64*>(buf + off);
      off += d->d_reclen;
      if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
      int number = 0;
      for (const char* c = d->d_name; *c; ++c) number = number * 10 + (*c - '0');
      f(number, dir);
    }
  }
  rawSyscall(SYS_close, dir);
  return true;
}

}  // namespace mig::shim
