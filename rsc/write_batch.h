// rsc/write_batch.h: what the relay (shadow/job_calls.cc) does with pipelined writes
// (rsc/wire.h, kNoReply) without running them: check one, join consecutive ones to
// the same fd into one request, answer a failed one with a deferred failure, and keep
// the writes queued behind a failed one from running (WriteFailures).
#pragma once

#include <kj/array.h>
#include <kj/common.h>

#include <map>
#include <stdint.h>

namespace mig::rsc {

struct PipelinedWrite {
  int64_t fd;
  uint64_t seq;
  uint64_t order;
  uint64_t count;            // bytes
  uint32_t call = 0;         // its row (write or pwrite64)
  int64_t offset = -1;       // pwrite64's offset; -1 for write
  bool failureSeen = false;  // it carried kFailureSeen (taken off the request)
  bool noTtou = false;       // it carries kNoTtou (kept: the deputy's terminal rule)
};

// True when `request` is a well-formed pipelined write (a request with kNoReply, and
// perhaps kFailureSeen and kNoTtou, of a row that may come pipelined, which is a write or a
// pwrite64: call_policy.h; its payload exactly args[2] bytes, at most kMaxIo); fills w
// and takes kFailureSeen off the request (the deputy never sees it).
bool parsePipelinedWrite(kj::ArrayPtr<kj::byte> request, PipelinedWrite& w);

// Whether `next` may travel in one request with `prev` (issued just before it): the
// same fd and row, pwrite64's offsets back to back, the same kNoTtou, and `next` not
// one the failure rule must see on its own (failureSeen).
bool joinsWith(const PipelinedWrite& prev, const PipelinedWrite& next);

// One pipelined write carrying the bytes of `parts` (parsed, joinsWith each other, together
// at most kMaxIo bytes), in their order; its seq and order are the last part's, its
// offset (pwrite64) the first's.
kj::Array<kj::byte> joinWrites(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> parts);

// Write-behind's failure rule, per fd: once a pipelined write failed at home, the
// writes to that fd queued behind it do not run (they fail alike), so no byte lands
// at an offset the program did not mean: the program, told of the failure on a later
// call, decides what comes next. That ends with the first write the shim sends after
// telling it (kFailureSeen), or a close of the fd.
class WriteFailures {
 public:
  // The batch ending with a write to fd failed with `error`.
  void failed(int64_t fd, int32_t error) { failed_[fd] = error; }
  // Before `w` is sent: the errno it fails with unsent, or 0 to send it.
  int32_t before(const PipelinedWrite& w);
  // The fd was closed (its number may name another file next).
  void closed(int64_t fd) { failed_.erase(fd); }

 private:
  std::map<int64_t, int32_t> failed_;
};

// The reply that tells the shim a pipelined write failed with `error` (kDeferredFailure).
kj::Array<kj::byte> deferredFailure(const PipelinedWrite& w, int32_t error);

}  // namespace mig::rsc
