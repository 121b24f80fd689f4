// A job's write to a blocking stream at home (a socket or a pipe) that the kernel can
// take at once, run on the deputy's event loop instead of a worker thread. A worker
// costs a futex wake-up there and a cross-thread fulfil back, on every message of a
// ping-pong (issue 13, linkcpu); most writes to a socket whose peer keeps up never
// block. Tried without blocking (pwritev2 RWF_NOWAIT for write, MSG_DONTWAIT for a
// send); what the kernel did not take goes to a worker as a blocking write of the
// rest, which is what the blocking write would have gone on to do.
#pragma once

#include "rsc/wire.h"

#include <kj/array.h>

#include <cstdint>

namespace mig::deputy {

struct WriteNow {
  // The whole answer, as rsc::Dispatcher would give it (empty for a pipelined write
  // that worked); null when the kernel took only part, or nothing (then `rest`).
  kj::Array<kj::byte> reply;
  bool done = false;
  uint64_t written = 0;  // bytes the kernel took here
  // The request for what is left (set when done is false and `written` > 0); with
  // nothing taken, the original request goes to a worker unchanged.
  kj::Array<kj::byte> rest;
};

// For a well-formed Write or Sendto (no address) request on fd `fd`, a blocking
// socket or pipe (the caller's fstat): what one try without blocking did. nullptr:
// not such a request or the kernel cannot try without blocking (an older kernel's
// EOPNOTSUPP): run it as before.
kj::Maybe<WriteNow> writeNow(kj::ArrayPtr<const kj::byte> request, int fd);

// The answer of a write whose first `written` bytes went here and whose rest ran on a
// worker, answered `restReply` (null: cancelled before it began). The job sees what
// its blocking write would have returned: all of it, or what went before an error or
// a signal (an error after some bytes is told by the next write, as the kernel does).
// A pipelined write's answer is the rest's: empty, or its failure.
kj::Array<kj::byte> joinedReply(const rsc::RequestHeader& h, uint64_t written, kj::Array<kj::byte> restReply);

}  // namespace mig::deputy
