// One forwarded system call over the calling thread's own connection to the relay
// (Config::relaySocket, the local shadowd, which carries the bytes home to the
// deputy). Each thread has its own connection, opened on first use from the SIGSYS
// handler, so calls of different threads never wait for each other and the handler
// needs no lock. Messages are those of rsc/wire.h, built in a per-thread buffer that
// is mmap'd on first use (no malloc in the handler).
#pragma once

#include "rsc/forward_table.h"

#include <cstdint>

namespace mig::forward {

// Sends the call `row` with `args` home and waits for its reply; the application's
// output buffers are filled from it. Returns what the system call would: the result,
// or a negative errno (EIO when the relay cannot be reached or the link breaks; then
// the connection is dropped and the next call connects again). `patient`: the call may
// legitimately block for long at home (a read from a terminal or pipe): wait for the
// reply without the usual timeout.
long forwardCall(const rsc::Row& row, const int64_t args[6], bool patient = false);

// Whether the calling thread's last forwarded call ended with EINTR because a signal
// its program handles came while it waited and home cancelled it (connection.cc);
// the SIGSYS handler then makes of the call what the signal's action would have
// (EINTR, or the call made again under SA_RESTART). Clears it.
bool takeSignalCancel();

// A write to a stream fd in blocking mode or to a file at home, sent without waiting
// for its result: the deputy finishes it, in the order the job's writes were issued (by
// any thread), and only a failure comes back, reported by this thread's next write
// (firstPiece: the first piece of a call), fsync, fdatasync or close of that fd. Returns
// the count, or a negative errno (an earlier failure on this fd, EIO).
long forwardPipelinedWrite(const rsc::Row& row, const int64_t args[6], bool firstPiece);

// Waits until every pipelined write issued so far has run at home (before a
// checkpoint: the job must not leave with writes behind it). False if the relay
// cannot be reached.
bool drainPipelinedWrites();

// Opens the calling thread's connection now if it has none; false if the relay
// cannot be reached. (The relay takes a job's first connection as the sign that its
// restore worked.)
bool connectNow();

// The calling thread is about to exit: close its connection, free its buffer.
void releaseThreadConnection();

// Closes every thread's connection (from the control thread while all other threads
// are parked, or before any thread runs after a restore, where the old numbers are
// not ours any more: then `close` is false). Threads reconnect on their next call.
void dropAllConnections(bool close);

}  // namespace mig::forward
