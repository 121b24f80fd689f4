// See pending_siginfo.h. The thread is seized and interrupted only for the moment of
// the peek: it is parked in the shim's checkpoint handler (a futex wait or a poll),
// which the kernel restarts transparently when the tracer detaches.
#include "resources/pending_siginfo.h"

#include "resources/proc_file.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sys/ptrace.h>
#include <sys/wait.h>

namespace mig::resources {
namespace {

constexpr int kCheckpointSignal = 63;  // the shim's own (shim/runtime.h): never saved
constexpr int kBatch = 32;

// Codes whose siginfo names the sending process (kill, sigqueue, tgkill).
bool carriesSender(int32_t code) { return code == SI_USER || code == SI_QUEUE || code == SI_TKILL; }

}  // namespace

bool PendingSiginfoReader::read(pid_t tid, bool shared, kj::Vector<QueuedSignal>& out) {
  if (ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0) return false;
  bool ok = false;
  int status = 0;
  if (ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) == 0 && waitpid(tid, &status, __WALL) == tid &&
      WIFSTOPPED(status)) {
    ok = true;
    for (uint64_t off = 0;; off += kBatch) {
      __ptrace_peeksiginfo_args args {};
      args.off = off;
      args.flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0;
      args.nr = kBatch;
      siginfo_t batch[kBatch];
      long n = ptrace(PTRACE_PEEKSIGINFO, tid, &args, batch);
      if (n < 0) {
        ok = false;
        break;
      }
      for (long i = 0; i < n; ++i) {
        if (batch[i].si_signo == kCheckpointSignal) continue;
        if (carriesSender(batch[i].si_code) && batch[i].si_pid == realPid_) batch[i].si_pid = vpid_;
        QueuedSignal q;
        static_assert(sizeof(q.info) == sizeof(siginfo_t));
        memcpy(q.info, &batch[i], sizeof(q.info));
        out.add(q);
      }
      if (n < kBatch) break;
    }
  }
  ptrace(PTRACE_DETACH, tid, nullptr, nullptr);
  return ok;
}

void addSignals(uint64_t mask, capnp::List<uint32_t>::Builder out) {
  uint32_t i = 0;
  for (uint32_t sig = 1; sig <= 64; ++sig) {
    if (mask & (1ull << (sig - 1))) out.set(i++, sig);
  }
}

uint64_t pendingMask(const std::string& status, const char* field) {
  uint64_t m = strtoull(fieldOr(status, field).c_str(), nullptr, 16);
  return m & ~(1ull << (63 - 1));  // never re-raise the checkpoint signal
}

}  // namespace mig::resources
