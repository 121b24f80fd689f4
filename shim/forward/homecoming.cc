// See homecoming.h. answerAfterHomecoming runs in the SIGSYS handler (raw system
// calls only, no allocation, errno untouched).
#include "shim/forward/homecoming.h"

#include "rsc/marshal.h"
#include "rsc/wire.h"
#include "shim/forward/carried_replies.h"
#include "shim/forward/state.h"
#include "shim/log.h"
#include "shim/raw_syscall.h"
#include "shim/runtime.h"

#include <cerrno>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

namespace mig::forward {

using shim::rawSyscall;

namespace {
thread_local uint8_t t_runHere MIG_TLS;
}  // namespace

bool takeRunHere() {
  if (t_runHere == 0) return false;
  t_runHere = 0;
  return true;
}

void takeCarriedReplies(int fd) {
  State& s = shim::g_runtime.forward;
  if (s.carried != nullptr) rawSyscall(SYS_munmap, reinterpret_cast<long>(s.carried), static_cast<long>(s.carriedSize));
  s.carried = nullptr;
  s.carriedSize = 0;
  if (fd < 0) return;
  struct stat st {};
  if (rawSyscall(SYS_fstat, fd, reinterpret_cast<long>(&st)) == 0 && st.st_size >= static_cast<long>(sizeof(CarriedHeader))) {
    long m = rawSyscall(SYS_mmap, 0, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m > 0) {
      s.carried = reinterpret_cast<const uint8_t*>(m);
      s.carriedSize = static_cast<uint64_t>(st.st_size);
    }
  }
  rawSyscall(SYS_close, fd);
}

long answerAfterHomecoming(const rsc::Row& row, const int64_t args[6], uint64_t seq, uint32_t thread, uint8_t* buf,
                           uint64_t cap) {
  const State& s = shim::g_runtime.forward;
  const uint8_t* p = s.carried;
  const uint8_t* end = p + s.carriedSize;
  CarriedHeader h{};
  if (p != nullptr) __builtin_memcpy(&h, p, sizeof(h));
  uint32_t left = h.magic == kCarriedMagic ? h.count : 0;
  p += sizeof(h);
  for (; left > 0 && end - p >= static_cast<long>(sizeof(CarriedEntry)); --left) {
    CarriedEntry e{};
    __builtin_memcpy(&e, p, sizeof(e));
    p += sizeof(e);
    if (e.length > static_cast<uint64_t>(end - p)) break;
    if (e.thread == thread && e.seq == seq && e.length <= cap) {
      __builtin_memcpy(buf, p, e.length);
      int32_t error = 0;
      int64_t r = rsc::decodeReply(row, args, seq, buf, e.length, &error);
      long result = r == -1 ? -static_cast<long>(error) : static_cast<long>(r);
      if (shim::logging()) {
        shim::LogLine() << "back home: " << row.function << " answered by the deputy before the move = "
                        << static_cast<int64_t>(result);
      }
      return result;
    }
    p += carriedPadded(e.length);
  }
  if (shim::logging()) shim::LogLine() << "back home: " << row.function << " runs here (home had not run it)";
  t_runHere = 1;
  return -EIO;
}

}  // namespace mig::forward
