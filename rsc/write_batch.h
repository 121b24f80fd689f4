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

// The most batches of pipelined writes to files (kFileWrite) the relay has at the
// deputy at once: they run there on its loop in the order they come, so more than one
// may be on its way and a MiB does not cost a round trip. A stream's batch runs on a
// worker thread (it may block) and so travels alone.
inline constexpr size_t kWritesInFlight = 4;

struct PipelinedWrite {
  int64_t fd;
  uint64_t seq;
  uint64_t order;
  uint64_t count;            // bytes
  uint32_t call = 0;         // its row (write or pwrite64)
  int64_t offset = -1;       // pwrite64's offset; -1 for write
  bool failureSeen = false;  // it carried kFailureSeen
  bool noTtou = false;       // it carries kNoTtou (kept: the deputy's terminal rule)
  bool file = false;         // it carried kFileWrite (taken off the request)
};

// True when `request` is a well-formed pipelined write (a request with kNoReply, and
// perhaps kFailureSeen, kNoTtou and kFileWrite, of a row that may come pipelined, which
// is a write or a pwrite64: call_policy.h; its payload exactly args[2] bytes, at most
// kMaxIo); fills w and takes kFileWrite off the request (the deputy needs only
// kFailureSeen, for its own WriteFailures, and kNoTtou).
bool parsePipelinedWrite(kj::ArrayPtr<kj::byte> request, PipelinedWrite& w);

// Whether `next` may travel in one request with `prev` (issued just before it): the
// same fd and row, pwrite64's offsets back to back, the same kNoTtou, and `next` not
// one the failure rule must see on its own (failureSeen).
bool joinsWith(const PipelinedWrite& prev, const PipelinedWrite& next);

// One pipelined write carrying the bytes of `parts` (parsed, joinsWith each other, together
// at most kMaxIo bytes), in their order; its seq and order are the last part's, its
// offset (pwrite64) and flags the first's.
kj::Array<kj::byte> joinWrites(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> parts);

// Write-behind's failure rule, per fd: once a pipelined write failed at home, the
// writes to that fd queued behind it do not run (they fail alike), so no byte lands
// at an offset the program did not mean: the program, told of the failure on a later
// call, decides what comes next. That ends with the first write the shim sends after
// telling it (kFailureSeen), or a close of the fd. The relay keeps it for the writes
// it has not sent yet, the deputy for the batches already on their way when one failed.
class WriteFailures {
 public:
  // Whether a write to fd failed and the rule holds for it.
  bool has(int64_t fd) const { return failed_.count(fd) > 0; }
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
