// Forwarded calls that need more than one message: reads and writes larger than a
// message holds (rsc::kMaxIo) go as consecutive pieces, and vectored I/O on a home fd
// goes buffer by buffer (the table has no readv/writev rows). Like the kernel's own
// short transfers, a piece that moves less than asked ends the call. Writes to a
// stream in blocking mode or a file at home are pipelined, piece by piece.
#include "shim/forward/trapped_call.h"

#include "rsc/call_policy.h"
#include "rsc/wire.h"
#include "shim/forward/child_table.h"
#include "shim/forward/connection.h"
#include "shim/forward/homecoming.h"
#include "shim/forward/state.h"
#include "shim/runtime.h"

#include <cerrno>
#include <sys/syscall.h>
#include <sys/uio.h>

namespace mig::forward {
namespace {

State& state() { return shim::g_runtime.forward; }

bool isStream(const int64_t args[6]) { return isStreamFd(state(), fdArg(args[0])); }

// firstPiece: false for the pieces of a call after its first (a split write, writev's
// later buffers), which must not tell an earlier write's failure: the call returns the
// count done so far then, and the failure would be lost behind it (it waits for the
// next call; the piece fails unsent at the relay meanwhile, rsc::WriteFailures).
long send(const rsc::Row& row, const int64_t args[6], bool firstPiece) {
  // Writes to a stream in blocking mode, and to a file unless MIG_SYNC_WRITES=1, do not
  // wait for their result (connection.h).
  const State& s = state();
  const bool stream = isStream(args);
  const bool pipelines = isPipelinedFd(s, fdArg(args[0])) && (stream || !s.syncWrites);
  if (rsc::isPipelined(row, pipelines, stream)) return forwardPipelinedWrite(row, args, firstPiece);
  return forwardCall(row, args, rsc::waitsPatiently(row, stream));
}

}  // namespace

long forwardRow(const rsc::Row& row, const int64_t args[6], bool firstPiece) {
  const uint64_t count = static_cast<uint64_t>(args[2]);
  if (!rsc::isSplit(row, count)) return send(row, args, firstPiece);
  uint64_t done = 0;
  while (done < count) {
    const uint64_t piece = count - done < rsc::kMaxIo ? count - done : rsc::kMaxIo;
    int64_t part[6] = {args[0], args[1] + static_cast<int64_t>(done), static_cast<int64_t>(piece),
                       row.has(rsc::kPositioned) ? args[3] + static_cast<int64_t>(done) : args[3], args[4], args[5]};
    long r = send(row, part, firstPiece && done == 0);
    if (r < 0 && done > 0) takeRunHere();  // back home: the pieces home ran are the result
    if (r < 0) return done > 0 ? static_cast<long>(done) : r;
    done += static_cast<uint64_t>(r);
    if (static_cast<uint64_t>(r) < piece) break;
  }
  return static_cast<long>(done);
}

long forwardSyscall(long nr, int64_t a0, int64_t a1, int64_t a2, int64_t a3) {
  const int64_t args[6] = {a0, a1, a2, a3, 0, 0};
  const rsc::Row* row = rsc::findRow(nr, args);
  if (row == nullptr) return -EIO;
  return forwardRow(*row, args);
}

long forwardVectorIo(const TrappedCall& c) {
  const bool write = c.nr == SYS_writev || c.nr == SYS_pwritev || c.nr == SYS_pwritev2;
  const bool positioned = c.nr != SYS_readv && c.nr != SYS_writev;
  const auto* iov = reinterpret_cast<const struct iovec*>(c.a[1]);
  const int64_t count = c.a[2];
  int64_t offset = c.a[3];  // preadv & co: pos_l holds the whole offset on x86_64
  // preadv2/pwritev2 with offset -1 use the file position, like readv/writev.
  const bool useOffset = positioned && offset != -1;
  if (count < 0 || count > 1024) return -EINVAL;
  if ((c.nr == SYS_preadv2 || c.nr == SYS_pwritev2) && c.a[5] != 0) return -EOPNOTSUPP;  // RWF_* flags
  const long nr = useOffset ? (write ? SYS_pwrite64 : SYS_pread64) : (write ? SYS_write : SYS_read);
  const int64_t fd = homeFdOf(fdArg(c.a[0]));
  int64_t total = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (iov[i].iov_len == 0) continue;
    const int64_t len = static_cast<int64_t>(iov[i].iov_len);
    const int64_t args[6] = {fd, reinterpret_cast<int64_t>(iov[i].iov_base), len, offset, 0, 0};
    const rsc::Row* row = rsc::findRow(nr, args);
    if (row == nullptr) return -EIO;
    long r = forwardRow(*row, args, total == 0);
    if (r < 0 && total > 0) takeRunHere();  // back home: the buffers home filled are the result
    if (r < 0) return total > 0 ? total : r;
    total += r;
    if (useOffset) offset += r;
    if (r < len) break;
  }
  return total;
}

}  // namespace mig::forward
