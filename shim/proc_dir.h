// Reading /proc with raw system calls (the numbered entries of a directory, our
// threads or fds; a file line by line; numbers in it): no allocation, usable while
// other threads are parked holding locks, and from the SIGSYS handler.
#pragma once

#include "shim/raw_syscall.h"

#include <cerrno>
#include <cstdint>
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

// Calls one of `path`'s lines at a time (at most 127 bytes of each) until fn says stop.
template <typename Fn>
void forEachLine(const char* path, Fn fn) {
  long fd = rawSyscall(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char chunk[512], line[128];
  size_t len = 0;
  for (;;) {
    long n = rawSyscall(SYS_read, fd, reinterpret_cast<long>(chunk), sizeof(chunk));
    if (n == -EINTR) continue;
    if (n <= 0) break;
    for (long i = 0; i < n; ++i) {
      if (chunk[i] != '\n') {
        if (len < sizeof(line) - 1) line[len++] = chunk[i];
        continue;
      }
      line[len] = '\0';
      len = 0;
      if (!fn(line)) {
        rawSyscall(SYS_close, fd);
        return;
      }
    }
  }
  rawSyscall(SYS_close, fd);
}

// "KEY: N" -> N, if line starts with key.
inline bool numberAfter(const char* line, const char* key, int64_t& out) {
  for (; *key != '\0'; ++key, ++line) {
    if (*line != *key) return false;
  }
  while (*line == ' ' || *line == '\t') ++line;
  bool negative = *line == '-';
  if (negative) ++line;
  if (*line < '0' || *line > '9') return false;
  int64_t v = 0;
  for (; *line >= '0' && *line <= '9'; ++line) v = v * 10 + (*line - '0');
  out = negative ? -v : v;
  return true;
}

// v in decimal at p, NUL-terminated; returns where the NUL is.
inline char* putDecimal(char* p, uint64_t v) {
  char digits[24];
  int n = 0;
  do digits[n++] = static_cast<char>('0' + v % 10); while ((v /= 10) != 0);
  while (n > 0) *p++ = digits[--n];
  *p = '\0';
  return p;
}

}  // namespace mig::shim
