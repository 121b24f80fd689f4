// rsc/wire.h: the bytes of one forwarded system call, as the shim on a remote host
// sends it and the deputy at home answers it. This is the contract between the shim
// (shim/forward/, async-signal-safe, no allocation) and the deputy's dispatcher
// (rsc/dispatch.cc, libffi); shadowd only carries the bytes (a Data field of an RPC,
// see rsc/mig.capnp), so adding a forwarded call is one line in rsc/forward_calls.def.
//
// Request:  RequestHeader | payload for each input argument, in argument order
// Reply:    ReplyHeader   | payload for each output argument, in argument order
// Payload:  uint64_t byteCount | bytes | zero padding to a multiple of 8
//
// Input arguments are those of kinds InBuf, Path, InStruct, InOutStruct; output
// arguments are OutBuf, OutStruct, InOutStruct (see forward_table.h). Pointer
// arguments travel as payloads; in RequestHeader::args their slot holds the
// application's pointer value, which the deputy ignores. Fd numbers are the same at
// home and away (the deputy holds the job's fds under the numbers the job knows).
#pragma once

#include <stdint.h>

namespace mig::rsc {

inline constexpr uint32_t kRequestMagic = 0x51435352u;  // "RSCQ"
inline constexpr uint32_t kReplyMagic = 0x50435352u;    // "RSCP"
// Largest message either way; the shim splits larger reads and writes.
inline constexpr uint32_t kMaxMessage = 1u << 20;
inline constexpr uint32_t kMaxIo = kMaxMessage - 4096;

// RequestHeader::flags
inline constexpr uint32_t kNoReply = 1;  // pipelined write (Write rows only): the deputy
                                         // finishes it and answers only a failure, which
                                         // the shim reports on a later call
inline constexpr uint32_t kBarrier = 2;  // not a call: the relay answers (result 0) once every
                                         // pipelined write up to `order` has run at home
inline constexpr uint32_t kCancel = 4;   // not a call: the thread took a signal its program
                                         // handles while its call `seq` waits at home; the
                                         // relay asks the deputy to end that call
                                         // (Deputy.cancel), whose answer still comes as
                                         // the call's (EINTR, or what it did first)
inline constexpr uint32_t kAgain = 8;    // sent again after a checkpoint took its connection:
                                         // the relay sends it home as a call (never served
                                         // from pushed bytes, shadow/pushed_reads.h) and
                                         // takes this flag off
inline constexpr uint32_t kFailureSeen = 16;  // a pipelined write sent after the shim told the
                                              // program of its fd's failed write: the relay and
                                              // the deputy run it and the ones after it again
                                              // (rsc::WriteFailures); a batch it begins keeps it

inline constexpr uint32_t kNoTtin = 32;  // a call that takes input, of a job that ignores or
                                         // blocks SIGTTIN: its read of the terminal from a
                                         // background group fails EIO, as the kernel's would
                                         // (deputy/call_runner.cc waitForeground)
inline constexpr uint32_t kNoTtou = kNoTtin;  // the same bit on a write (rsc::terminalStopSignal),
                                              // of a job that ignores or blocks SIGTTOU: its
                                              // write to the terminal from a background group
                                              // with TOSTOP set goes on, as the kernel's would
inline constexpr uint32_t kFileWrite = 128;  // a pipelined write to a regular file (write-behind):
                                             // it runs on the deputy's loop, in the order it
                                             // came, so the relay may have several batches of
                                             // them at the deputy at once, and it goes past
                                             // the writes to streams issued before it that
                                             // wait (a full pipe at home). On any other request:
                                             // it runs after the writes to files up to `order`
                                             // only. The relay takes it off

// ReplyHeader::flags
inline constexpr uint32_t kDeferredFailure = 1;  // an earlier pipelined write (its seq) failed:
                                                 // `result` holds its fd, `error` the errno

struct RequestHeader {
  uint32_t magic;
  uint32_t length;   // whole message, header included
  uint64_t seq;      // the thread's sequence number (never reused), echoed in the reply
  uint32_t call;     // forward table row id (CallId)
  uint32_t flags;
  int64_t args[6];   // the system call's arguments as the application passed them
  // The job's pipelined writes are numbered 1, 2, ... across all its threads, in the
  // order they were issued. A pipelined write carries its number; any other request
  // carries the number of the last one issued before it, and runs only after it (with
  // kFileWrite: after the writes to files up to it).
  uint64_t order;
  // The calling thread (its virtual TID). With seq, it names the call across
  // connections: a call that was waiting at home when its thread was checkpointed is
  // sent again from where the thread resumed, and the deputy answers it with the
  // result of the first (still running, or done) instead of running it twice.
  uint32_t thread;
  uint32_t reserved;
};
static_assert(sizeof(RequestHeader) == 88);

// A whole request that is a cancel (kCancel): a header alone.
inline bool isCancel(const RequestHeader& h) {
  return h.magic == kRequestMagic && (h.flags & kCancel) && h.length == sizeof(RequestHeader);
}

struct ReplyHeader {
  uint32_t magic;
  uint32_t length;   // whole message, header included
  uint64_t seq;
  int64_t result;    // the call's return value (>= 0), or -1
  int32_t error;     // errno when result is -1, else 0
  uint32_t flags;
};
static_assert(sizeof(ReplyHeader) == 32);

// The whole reply of call `seq` that failed with `error` (result -1, nothing more).
inline ReplyHeader failureReply(uint64_t seq, int32_t error) {
  ReplyHeader h{};
  h.magic = kReplyMagic;
  h.length = sizeof(h);
  h.seq = seq;
  h.result = -1;
  h.error = error;
  return h;
}

}  // namespace mig::rsc
