// See child_locks.h. The deputy's side (mig_child_lock) and the lock keeper.
#include "rsc/child_locks.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::rsc {
namespace {

struct Request {
  int cmd;
  int fd;
  int owner;
  int access;  // O_ACCMODE of the deputy's fd: the child's description is opened alike
  struct flock lock;
};
struct Reply {
  int ret;
  int error;
  struct flock lock;
};

// The keeper's table: one description per (owner, file). Fixed: the keeper never
// allocates (it is a copy of a threaded process).
struct Held {
  int owner;
  dev_t dev;
  ino_t ino;
  int fd;  // -1: free slot
};
constexpr int kMaxHeld = 1024;

// "/proc/PID/fd/N" without stdio.
void procFdPath(char* out, pid_t pid, int fd) {
  auto put = [&out](long v) {
    char digits[24];
    int n = 0;
    do digits[n++] = static_cast<char>('0' + v % 10);
    while ((v /= 10) > 0);
    while (n > 0) *out++ = digits[--n];
  };
  memcpy(out, "/proc/", 6);
  out += 6;
  put(pid);
  memcpy(out, "/fd/", 4);
  out += 4;
  put(fd);
  *out = '\0';
}

void closeHeld(Held& h) {
  close(h.fd);
  h.fd = -1;
}

[[noreturn]] void keep(int sock, pid_t deputy) {
  static Held held[kMaxHeld];
  for (auto& h : held) h.fd = -1;
  for (;;) {
    Request q;
    ssize_t got = recv(sock, &q, sizeof q, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got != static_cast<ssize_t>(sizeof q)) _exit(0);  // the deputy is gone (or became the job)
    Reply r{0, 0, q.lock};
    if (q.cmd == kChildLockForgetAll) {
      for (auto& h : held)
        if (h.fd >= 0 && h.owner == q.owner) closeHeld(h);
    } else {
      char path[64];
      procFdPath(path, deputy, q.fd);
      struct stat st;
      Held* mine = nullptr;
      Held* free = nullptr;
      if (stat(path, &st) != 0) {
        r.ret = -1;
        r.error = EBADF;
      } else {
        for (auto& h : held) {
          if (h.fd >= 0 && h.owner == q.owner && h.dev == st.st_dev && h.ino == st.st_ino) mine = &h;
          if (h.fd < 0 && free == nullptr) free = &h;
        }
        if (q.cmd == kChildLockForget) {
          if (mine != nullptr) closeHeld(*mine);
        } else {
          if (mine == nullptr && free != nullptr) {
            int fd = open(path, q.access | O_CLOEXEC | O_NOCTTY);
            if (fd >= 0) *free = Held{q.owner, st.st_dev, st.st_ino, fd};
            mine = fd >= 0 ? free : nullptr;
            if (fd < 0) r.error = errno;
          } else if (mine == nullptr) {
            r.error = ENOLCK;  // the table is full
          }
          if (mine != nullptr) {
            r.lock.l_pid = 0;
            r.ret = fcntl(mine->fd, q.cmd, &r.lock);
            r.error = r.ret < 0 ? errno : 0;
          } else {
            r.ret = -1;
          }
        }
      }
    }
    if (send(sock, &r, sizeof r, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof r)) _exit(0);
  }
}

std::mutex g_mutex;
int g_sock = -1;
int (*g_place)(int) = nullptr;

// Starts the keeper: a grandchild of the deputy, so that it is never the deputy's child
// (the job's waits at home run in the deputy and must see only the job's children; a
// child's SIGCHLD would be forwarded to the job). Its middle process is made without an
// exit signal and reaped here at once.
bool startKeeper() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return false;
  const pid_t deputy = getpid();
  const long middle = syscall(SYS_clone, 0L, 0L, 0L, 0L, 0L);  // fork, no SIGCHLD
  if (middle < 0) {
    close(sv[0]);
    close(sv[1]);
    return false;
  }
  if (middle == 0) {
    // A copy of a threaded process: system calls only from here on.
    if (syscall(SYS_clone, static_cast<long>(SIGCHLD), 0L, 0L, 0L, 0L) == 0) {
      sigset_t none;
      sigemptyset(&none);
      syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, 8);
      if (dup2(sv[1], 0) != 0) _exit(1);
      syscall(SYS_close_range, 1u, ~0u, 0);  // the job's files and the deputy's are not its
      keep(0, deputy);
    }
    syscall(SYS_exit, 0);
  }
  close(sv[1]);
  int status;
  while (waitpid(static_cast<pid_t>(middle), &status, __WCLONE) < 0 && errno == EINTR) {
  }
  int placed = g_place != nullptr ? g_place(sv[0]) : sv[0];
  if (placed < 0) return false;
  g_sock = placed;
  return true;
}

// Does this process hold record locks (the job's) on the file of `fd`? First asked of
// the kernel as a test for an OFD lock on the whole file through fd: it meets every
// lock of another owner, this process's record locks included, and says nothing is
// there for most files. Else /proc/locks, which lists every lock of the system, each as
// "N: POSIX  ADVISORY  WRITE PID MAJ:MIN:INO START END" ("->" after N: a waiter),
// matched by inode number alone (the device there is the superblock's, not always
// what stat says: btrfs, overlayfs; a file elsewhere with the same number only keeps
// an fd aside a while longer).
bool holdsRecordLocks(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  const long self = getpid();
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  if (fcntl(fd, F_OFD_GETLK, &probe) == 0) {
    if (probe.l_type == F_UNLCK) return false;
    if (probe.l_pid == self) return true;
  }
  FILE* f = fopen("/proc/locks", "re");
  if (f == nullptr) return true;  // cannot tell: keeping the fd open is the safe side
  bool held = false;
  char line[256];
  while (!held && fgets(line, sizeof line, f) != nullptr) {
    char kind[16];
    long pid = 0;
    unsigned long ino = 0;
    held = strstr(line, "->") == nullptr && sscanf(line, "%*d: %15s %*s %*s %ld %*x:%*x:%lu", kind, &pid, &ino) == 3 &&
           strcmp(kind, "POSIX") == 0 && pid == self && ino == st.st_ino;
  }
  fclose(f);
  return held;
}

// Children's fds kept open while the job holds record locks on their files; each
// closed by closeFreedAside once it holds none there.
std::vector<int> g_aside;

void closeFreedAside() {
  for (size_t i = 0; i < g_aside.size();) {
    if (holdsRecordLocks(g_aside[i])) {
      ++i;
      continue;
    }
    close(g_aside[i]);
    g_aside.erase(g_aside.begin() + static_cast<long>(i));
  }
}

// One call to the keeper; g_mutex held.
int askKeeper(int fd, int cmd, struct flock* lock, int owner) {
  if (g_sock < 0) {
    if (cmd == kChildLockForget || cmd == kChildLockForgetAll) return 0;  // nothing was ever held
    if (!startKeeper()) {
      errno = ENOLCK;
      return -1;
    }
  }
  Request q{cmd, fd, owner, 0, {}};
  if (cmd != kChildLockForgetAll) {
    const int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;  // EBADF, as fcntl
    q.access = flags & O_ACCMODE;
  }
  if (lock != nullptr) q.lock = *lock;
  Reply r{};
  if (send(g_sock, &q, sizeof q, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof q) ||
      recv(g_sock, &r, sizeof r, 0) != static_cast<ssize_t>(sizeof r)) {
    // The keeper is gone, and every lock it held with it: this call fails, the next
    // starts another.
    close(g_sock);
    g_sock = -1;
    errno = ENOLCK;
    return -1;
  }
  if (lock != nullptr && (cmd == F_OFD_GETLK || cmd == F_OFD_SETLK)) *lock = r.lock;
  errno = r.error;
  return r.ret;
}

// kChildClose (child_locks.h).
int closeChildFd(int fd) {
  if (holdsRecordLocks(fd)) {
    g_aside.push_back(fd);
    return 0;
  }
  return close(fd);
}

}  // namespace

void setChildLockFdPlacer(int (*place)(int fd)) { g_place = place; }

}  // namespace mig::rsc

extern "C" __attribute__((visibility("default"))) int mig_child_lock(int fd, int cmd, struct flock* lock, int owner) {
  using namespace mig::rsc;
  std::lock_guard<std::mutex> hold(g_mutex);
  if (!g_aside.empty()) closeFreedAside();
  if (cmd == kChildClose) return closeChildFd(fd);
  return askKeeper(fd, cmd, lock, owner);
}
