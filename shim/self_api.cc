// The self-migration API (mig.h): what a program under mig may ask about itself.
// A request goes the way a user's would, through migctl: a helper `migctl
// migrate`/`migctl checkpoint` started from here talks to this host's shadowd (Local)
// or to this process's control socket, and the calling thread waits for it. When
// the request moves or restores the process, the waiting thread wakes up in the new
// copy (the helper's pipe is one of the shim's own fds, left out of the image) and
// sees that the process was restored since it asked.
//
// The helper is made with raw clone/execve: no fork wrapper, no atfork handlers of
// the program, no SIGCHLD for it (exit signal 0, reaped with __WALL), LD_PRELOAD
// removed from its environment, so it is not a job of its own.
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace mig::shim {
namespace {

constexpr size_t kMaxEnv = 1024;

void setError(const char* text) {
  char* e = g_runtime.self.lastError;
  size_t n = strnlen(text, sizeof(g_runtime.self.lastError) - 1);
  memcpy(e, text, n);
  e[n] = '\0';
}

bool exists(const char* path) { return rawSyscall(SYS_access, reinterpret_cast<long>(path), X_OK) == 0; }

// migctl: $MIG_MIGCTL, else beside libmig.so in the build tree or an install.
bool findMigctl(char* out, size_t len) {
  if (const char* env = getenv("MIG_MIGCTL"); env != nullptr && *env != '\0') {
    snprintf(out, len, "%s", env);
    return true;
  }
  Dl_info info {};
  if (dladdr(reinterpret_cast<void*>(&findMigctl), &info) == 0 || info.dli_fname == nullptr) return false;
  const char* slash = strrchr(info.dli_fname, '/');
  if (slash == nullptr) return false;
  const int dirLen = static_cast<int>(slash - info.dli_fname);
  for (const char* rel : {"/../migctl/migctl", "/../../bin/migctl", "/../bin/migctl", "/migctl"}) {
    snprintf(out, len, "%.*s%s", dirLen, info.dli_fname, rel);
    if (exists(out)) return true;
  }
  return false;
}

// The local shadowd's socket, when the process runs away from home: beside the
// relay socket it was given (shadowd keeps both in one directory). Empty: migctl's
// default (at home, where the environment is this host's).
void localSocket(char* out, size_t len) {
  out[0] = '\0';
  if (g_runtime.forward.status.load() != forward::kActive) return;
  const char* relay = g_runtime.forward.config.relaySocket;
  const char* slash = strrchr(relay, '/');
  if (slash == nullptr) return;
  snprintf(out, len, "%.*s/shadowd.sock", static_cast<int>(slash - relay), relay);
}

// Has this process been restored from an image since `beforeNs` was taken? The
// restorer writes rt.resume before any restored thread runs; the shim clears its
// magic before each checkpoint, so the copy that goes on after one does not match.
int64_t restoreStamp() {
  const plan::ResumeInfo& r = g_runtime.resume;
  if (__atomic_load_n(&r.magic, __ATOMIC_ACQUIRE) != plan::kResumeMagic) return 0;
  return __atomic_load_n(&r.monotonicNs, __ATOMIC_ACQUIRE);
}

bool restoredSince(int64_t beforeNs) {
  const int64_t now = restoreStamp();
  return now != 0 && now != beforeNs;
}

// Runs migctl with `args` (after argv[0]); its output, kept for mig_last_error, goes
// to a pipe of ours. Returns its wait status, -1 (errno) if it could not run, or
// kRestored when this process is a restored copy by the time it answered.
constexpr int kRestored = INT_MIN;

int runMigctl(const char* const* args, size_t argCount) {
  Runtime& rt = g_runtime;
  char migctl[PATH_MAX];
  if (!findMigctl(migctl, sizeof(migctl))) {
    setError("cannot find migctl beside libmig.so; set MIG_MIGCTL to its path");
    errno = ENOENT;
    return -1;
  }
  const char* argv[16];
  if (argCount + 2 > sizeof(argv) / sizeof(argv[0])) {
    errno = E2BIG;
    return -1;
  }
  argv[0] = migctl;
  for (size_t i = 0; i < argCount; ++i) argv[i + 1] = args[i];
  argv[argCount + 1] = nullptr;
  const char* envp[kMaxEnv];
  size_t n = 0;
  for (char** e = environ; e != nullptr && *e != nullptr && n + 1 < kMaxEnv; ++e) {
    if (strncmp(*e, "LD_PRELOAD=", 11) != 0) envp[n++] = *e;
  }
  envp[n] = nullptr;

  int p[2];
  if (long r = rawSyscall(SYS_pipe2, reinterpret_cast<long>(p), O_CLOEXEC); r < 0) {
    errno = static_cast<int>(-r);
    return -1;
  }
  // Our end far above the program's fds, and named to the checkpoint as the shim's.
  struct rlimit lim {};
  rawSyscall(SYS_getrlimit, RLIMIT_NOFILE, reinterpret_cast<long>(&lim));
  long floor = lim.rlim_cur > 128 ? static_cast<long>(lim.rlim_cur < 4096 ? lim.rlim_cur : 4096) - 72 : 64;
  long high = rawSyscall(SYS_fcntl, p[0], F_DUPFD_CLOEXEC, floor);
  if (high >= 0) {
    rawSyscall(SYS_close, p[0]);
    p[0] = static_cast<int>(high);
  }
  const int64_t before = restoreStamp();
  rt.self.pipeFd = p[0];

  long pid = rawSyscall(SYS_clone, 0 /* no exit signal */, 0, 0, 0, 0);
  if (pid == 0) {
    rawSyscall(SYS_dup2, p[1], 1);
    rawSyscall(SYS_dup2, p[1], 2);
    long devnull = rawSyscall(SYS_open, reinterpret_cast<long>("/dev/null"), O_RDONLY);
    if (devnull >= 0) rawSyscall(SYS_dup2, devnull, 0);
    rawSyscall(SYS_execve, reinterpret_cast<long>(migctl), reinterpret_cast<long>(argv),
               reinterpret_cast<long>(envp));
    static const char msg[] = "cannot run migctl\n";
    rawSyscall(SYS_write, 2, reinterpret_cast<long>(msg), sizeof(msg) - 1);
    rawSyscall(SYS_exit_group, 127);
  }
  rawSyscall(SYS_close, p[1]);
  if (pid < 0) {
    rt.self.pipeFd = -1;
    rawSyscall(SYS_close, p[0]);
    errno = static_cast<int>(-pid);
    return -1;
  }
  // Its last line is what a failure says.
  char out[512];
  size_t used = 0;
  char last[256] = "";
  for (;;) {
    char buf[256];
    long r = rawSyscall(SYS_read, p[0], reinterpret_cast<long>(buf), sizeof(buf));
    if (restoredSince(before)) {
      // A restored copy: the helper, its pipe and its answer belong to the old one.
      rt.self.pipeFd = -1;
      return kRestored;
    }
    if (r == -EINTR) continue;
    if (r <= 0) break;
    for (long i = 0; i < r; ++i) {
      if (buf[i] == '\n') {
        if (used > 0) {
          memcpy(last, out, used < sizeof(last) - 1 ? used : sizeof(last) - 1);
          last[used < sizeof(last) - 1 ? used : sizeof(last) - 1] = '\0';
        }
        used = 0;
      } else if (used < sizeof(out)) {
        out[used++] = buf[i];
      }
    }
  }
  rawSyscall(SYS_close, p[0]);
  rt.self.pipeFd = -1;
  int status = 0;
  long w;
  do {
    w = rawSyscall(SYS_wait4, pid, reinterpret_cast<long>(&status), __WALL, 0);
  } while (w == -EINTR);
  if (w < 0) status = 0x100 * 127;
  setError(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "" : last);
  return status;
}

// One self request at a time per process.
struct Busy {
  bool got;
  Busy() : got(!g_runtime.self.busy.exchange(true)) {}
  ~Busy() {
    if (got) g_runtime.self.busy.store(false);
  }
};

bool copyOut(const char* text, char* buf, size_t len) {
  size_t n = strlen(text);
  if (buf == nullptr || n + 1 > len) {
    errno = ERANGE;
    return false;
  }
  memcpy(buf, text, n + 1);
  return true;
}

}  // namespace

// Before main, at home: the host that stays this process's home.
void recordHome() {
  struct utsname u {};
  if (rawSyscall(SYS_uname, reinterpret_cast<long>(&u)) == 0) {
    snprintf(g_runtime.self.home, sizeof(g_runtime.self.home), "%s", u.nodename);
  }
}

}  // namespace mig::shim

using mig::shim::g_runtime;

extern "C" {

__attribute__((visibility("default"))) int mig_api_checkpoint(const char* path) {
  if (path == nullptr || *path == '\0') {
    errno = EINVAL;
    return -1;
  }
  mig::shim::Busy busy;
  if (!busy.got) {
    errno = EBUSY;
    return -1;
  }
  char pid[16];
  snprintf(pid, sizeof(pid), "%d", mig::shim::realPid());
  const char* args[] = {"checkpoint", pid, "-o", path};
  int status = mig::shim::runMigctl(args, 4);
  if (status == mig::shim::kRestored) return 1;
  if (status == -1) return -1;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  errno = EIO;
  return -1;
}

__attribute__((visibility("default"))) int mig_api_move(const char* node) {
  mig::shim::Busy busy;
  if (!busy.got) {
    errno = EBUSY;
    return -1;
  }
  char pid[16], socket[128];
  snprintf(pid, sizeof(pid), "%d", mig::shim::realPid());
  mig::shim::localSocket(socket, sizeof(socket));
  const char* args[8];
  size_t n = 0;
  args[n++] = "migrate";
  args[n++] = pid;
  if (node == nullptr) {
    args[n++] = "--anywhere";
  } else {
    args[n++] = "--to";
    args[n++] = node;
  }
  if (socket[0] != '\0') {
    args[n++] = "--socket";
    args[n++] = socket;
  }
  int status = mig::shim::runMigctl(args, n);
  if (status == mig::shim::kRestored) return 0;
  if (status == -1) return -1;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    // Moved, yet this copy was not replaced: shadowd ends it any moment now; never
    // let it go on as if it had moved (bounded wait, then an error).
    struct timespec t = {10, 0};
    mig::shim::rawSyscall(SYS_nanosleep, reinterpret_cast<long>(&t), 0);
    mig::shim::setError("migctl reported the move done, but this copy of the process was not replaced");
  }
  errno = EIO;
  return -1;
}

__attribute__((visibility("default"))) int mig_api_where(char* buf, size_t len) {
  struct utsname u {};
  if (mig::shim::rawSyscall(SYS_uname, reinterpret_cast<long>(&u)) != 0) {
    errno = EIO;
    return -1;
  }
  return mig::shim::copyOut(u.nodename, buf, len) ? 0 : -1;
}

__attribute__((visibility("default"))) int mig_api_home(char* buf, size_t len) {
  if (g_runtime.self.home[0] == '\0') {
    errno = ENOENT;  // a program exec'd away from home: home's name was never seen
    return -1;
  }
  return mig::shim::copyOut(g_runtime.self.home, buf, len) ? 0 : -1;
}

__attribute__((visibility("default"))) int mig_api_last_error(char* buf, size_t len) {
  return mig::shim::copyOut(g_runtime.self.lastError, buf, len) ? 0 : -1;
}

}  // extern "C"
