// See exec_handoff.h.
#include "shim/forward/exec_handoff.h"

#include "shim/forward/activation.h"
#include "shim/forward/state.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#include <sys/syscall.h>

namespace mig::forward {
namespace {

using shim::rawSyscall;

State& state() { return shim::g_runtime.forward; }

bool writeAt(long fd, const void* p, uint64_t n, uint64_t at) {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    long w = rawSyscall(SYS_pwrite64, fd, reinterpret_cast<long>(c), static_cast<long>(n), static_cast<long>(at));
    if (w == -EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= static_cast<uint64_t>(w);
    at += static_cast<uint64_t>(w);
  }
  return true;
}

// The Config in a memfd without close-on-exec; -1 if it cannot be made.
long writeConfig() {
  State& s = state();
  const shim::Runtime& rt = shim::g_runtime;
  long fd = rawSyscall(SYS_memfd_create, reinterpret_cast<long>("mig-forward"), 0);
  if (fd < 0) return -1;
  const int32_t vpid = rt.vpid, vppid = rt.vppid;
  const uint64_t order = s.pipelineOrder.load();
  if (!writeAt(fd, &s.config, sizeof(s.config), 0) ||
      !writeAt(fd, &vpid, sizeof(vpid), offsetof(Config, handoffVpid)) ||
      !writeAt(fd, &vppid, sizeof(vppid), offsetof(Config, handoffVppid)) ||
      !writeAt(fd, &order, sizeof(order), offsetof(Config, handoffPipelineOrder))) {
    rawSyscall(SYS_close, fd);
    return -1;
  }
  return fd;
}

bool isHandoffEntry(const char* e) {
  const size_t n = sizeof(kHandoffEnv) - 1;
  for (size_t i = 0; i < n; ++i) {
    if (e[i] != kHandoffEnv[i]) return false;
  }
  return e[n] == '=';
}

}  // namespace

long execWithHandoff(TrappedCall& c, const ucontext_t* uc) {
  const int envArg = c.nr == SYS_execve ? 2 : 3;
  const auto* const* env = reinterpret_cast<const char* const*>(c.a[envArg]);
  uint64_t count = 0;
  while (env != nullptr && env[count] != nullptr) ++count;
  long fd = writeConfig();
  if (fd < 0) return runLocally(c, uc);  // the program runs, not forwarding: better than not at all
  // The new environment: the old one without a stale handoff, and ours. After a
  // successful exec this memory is gone with the old program.
  const uint64_t bytes = (count + 2) * sizeof(char*) + 64;
  long m = rawSyscall(SYS_mmap, 0, static_cast<long>(bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m < 0) {
    rawSyscall(SYS_close, fd);
    return runLocally(c, uc);
  }
  auto** out = reinterpret_cast<const char**>(m);
  char* var = reinterpret_cast<char*>(m) + (count + 2) * sizeof(char*);
  uint64_t n = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (!isHandoffEntry(env[i])) out[n++] = env[i];
  }
  size_t at = 0;
  for (const char* p = kHandoffEnv; *p != 0; ++p) var[at++] = *p;
  var[at++] = '=';
  char digits[12];
  int k = 0;
  for (long v = fd; k == 0 || v > 0; v /= 10) digits[k++] = static_cast<char>('0' + v % 10);
  while (k > 0) var[at++] = digits[--k];
  var[at] = '\0';
  out[n++] = var;
  out[n] = nullptr;
  c.a[envArg] = m;
  long r = runLocally(c, uc);
  rawSyscall(SYS_munmap, m, static_cast<long>(bytes));  // only reached when exec failed
  rawSyscall(SYS_close, fd);
  return r;
}

bool takeHandoff() {
  const char* v = getenv(kHandoffEnv);
  if (v == nullptr) return false;
  const int fd = atoi(v);
  unsetenv(kHandoffEnv);
  bool ok = fd > 2 && loadConfig(fd);
  rawSyscall(SYS_close, fd);
  if (!ok) return false;
  shim::Runtime& rt = shim::g_runtime;
  rt.pendingVpid = state().config.handoffVpid;
  rt.pendingVppid = state().config.handoffVppid;
  return true;
}

void activateHandoff() {
  State& s = state();
  s.pipelineOrder.store(s.config.handoffPipelineOrder);
  s.fileWriteOrder.store(s.config.handoffPipelineOrder);  // the old program's writes may be to files
  activateProcess();
  dispatchThisThread();
}

}  // namespace mig::forward
