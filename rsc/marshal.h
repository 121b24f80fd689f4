// rsc/marshal.h: the shim's half of a forwarded call: turn a trapped call's
// arguments into a request (rsc/wire.h) and a reply back into the call's result and
// the application's output buffers.
//
// Async-signal-safe (the shim runs these in a SIGSYS handler or an interposed libc
// function): no allocation, no exceptions, no libc calls, no errno; errors are
// returned as values.
#pragma once

#include "rsc/forward_table.h"
#include "rsc/wire.h"

#include <stdint.h>

namespace mig::rsc {

// Writes the request for `row` called with `args` into buf: RequestHeader, then one
// payload per input argument (InBuf: args[lenArg] bytes; Path: the string with its
// NUL; structs: their size; a NULL path or struct pointer: a kNullPayload count).
// Returns the message length, or a negative errno: -E2BIG when the message would not
// fit in cap or kMaxMessage, or an InBuf/OutBuf length exceeds kMaxIo (split or clamp
// such I/O first); -ENAMETOOLONG for a path of kMaxPath bytes or more; -EFAULT for a
// NULL InBuf with a non-zero length. `order`, `thread`: RequestHeader's.
int64_t encodeRequest(const Row& row, const int64_t args[6], uint64_t seq, uint32_t flags,
                      uint8_t* buf, uint64_t cap, uint64_t order = 0, uint32_t thread = 0);

// Checks the reply to request `seq` strictly (magic, length, seq, result/error
// consistency, the exact byte count of every output payload, zero padding) and only
// then copies the output payloads to the application's pointers in args, never more
// than the request's buffers hold. Returns the call's result, or -1 with *error set
// to the errno value; a malformed reply gives -1 with *error = EIO and touches no
// application memory.
int64_t decodeReply(const Row& row, const int64_t args[6], uint64_t seq, const uint8_t* msg,
                    uint64_t len, int32_t* error);

// The largest reply the deputy can send for this call: the size of the buffer the
// shim must receive into (at most kMaxMessage).
uint64_t replyCapacity(const Row& row, const int64_t args[6]);

}  // namespace mig::rsc
