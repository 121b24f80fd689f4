// Forwarded calls that need more than one message: reads and writes larger than a
// message holds (rsc::kMaxIo) go as consecutive pieces, and vectored I/O on a home fd
// goes buffer by buffer (the table has no readv/writev rows). Like the kernel's own
// short transfers, a piece that moves less than asked ends the call. Writes to a
// stream in blocking mode are pipelined, piece by piece.
#include "shim/forward/trapped_call.h"

#include "rsc/wire.h"
#include "shim/forward/child_table.h"
#include "shim/forward/connection.h"
#include "shim/forward/state.h"
#include "shim/runtime.h"

#include <cerrno>
#include <sys/syscall.h>
#include <sys/uio.h>

namespace mig::forward {
namespace {

using rsc::CallId;

bool isIo(CallId id) {
  return id == CallId::Read || id == CallId::Write || id == CallId::Pread64 || id == CallId::Pwrite64 ||
         id == CallId::Sendto || id == CallId::Recvfrom;
}

bool hasOffset(CallId id) { return id == CallId::Pread64 || id == CallId::Pwrite64; }

// A read or write on a pipe, terminal or socket at home may wait for the other end
// as long as it likes, a wait for a child at home as long as the child runs, an
// accept as long as no client comes, and a connect as long as the network takes.
bool patient(const rsc::Row& row, const int64_t args[6]) {
  if (row.id == CallId::Wait4 || row.id == CallId::Waitid || row.id == CallId::Accept ||
      row.id == CallId::Accept4 || row.id == CallId::Connect) {
    return true;
  }
  if (row.id == CallId::Sendfile) return isStreamFd(shim::g_runtime.forward, fdArg(args[0]));
  return isIo(row.id) && isStreamFd(shim::g_runtime.forward, fdArg(args[0]));
}

// Writes to a stream in blocking mode do not wait for their result (connection.h).
bool pipelined(const rsc::Row& row, const int64_t args[6]) {
  return row.id == CallId::Write && isPipelinedFd(shim::g_runtime.forward, fdArg(args[0]));
}

long send(const rsc::Row& row, const int64_t args[6]) {
  return pipelined(row, args) ? forwardPipelinedWrite(row, args) : forwardCall(row, args, patient(row, args));
}

}  // namespace

long forwardRow(const rsc::Row& row, const int64_t args[6]) {
  const uint64_t count = static_cast<uint64_t>(args[2]);
  if (!isIo(row.id) || count <= rsc::kMaxIo) return send(row, args);
  uint64_t done = 0;
  while (done < count) {
    const uint64_t piece = count - done < rsc::kMaxIo ? count - done : rsc::kMaxIo;
    int64_t part[6] = {args[0], args[1] + static_cast<int64_t>(done), static_cast<int64_t>(piece),
                       hasOffset(row.id) ? args[3] + static_cast<int64_t>(done) : args[3], args[4], args[5]};
    long r = send(row, part);
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
    long r = forwardSyscall(nr, fd, reinterpret_cast<int64_t>(iov[i].iov_base), len, offset);
    if (r < 0) return total > 0 ? total : r;
    total += r;
    if (useOffset) offset += r;
    if (r < len) break;
  }
  return total;
}

}  // namespace mig::forward
