// rsc/write_batch.h: what the relay (shadow/job_calls.cc) does with pipelined writes
// (rsc/wire.h, kNoReply) without running them: check one, join consecutive ones to
// the same fd into one request, and answer a failed one with a deferred failure.
#pragma once

#include <kj/array.h>
#include <kj/common.h>

#include <stdint.h>

namespace mig::rsc {

struct PipelinedWrite {
  int64_t fd;
  uint64_t seq;
  uint64_t order;
  uint64_t count;  // bytes
};

// True when `request` is a well-formed pipelined write (a request with kNoReply of a
// row that may come pipelined, which is a write: call_policy.h; its payload exactly
// args[2] bytes, at most kMaxIo); fills w.
bool parsePipelinedWrite(kj::ArrayPtr<const kj::byte> request, PipelinedWrite& w);

// One pipelined write carrying the bytes of `parts` (parsed, all to one fd, together
// at most kMaxIo bytes), in their order; its seq and order are the last part's.
kj::Array<kj::byte> joinWrites(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> parts);

// The reply that tells the shim a pipelined write failed with `error` (kDeferredFailure).
kj::Array<kj::byte> deferredFailure(const PipelinedWrite& w, int32_t error);

}  // namespace mig::rsc
