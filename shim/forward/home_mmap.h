// mmap of a home fd in a migrated process: the kernel here cannot map a file that is
// open on another host, so the mapping is made by copy. An anonymous private mapping is
// made where the caller asked (its MAP_FIXED, MAP_NORESERVE... kept), filled with the
// file's bytes read from home (forwarded pread64s from the mapping's offset), and given
// the protection asked for.
//
//   MAP_PRIVATE (any protection)   by copy: the process's writes stay in its memory,
//                                  never reach the file (as with a private mapping)
//   MAP_SHARED, read-only          by copy, a snapshot taken at mmap: later writes to
//                                  the file at home are not seen, unless the job holds
//                                  a lock through that fd: then refreshed at its lock
//                                  calls on it (shared_file_mapping.h)
//   MAP_SHARED, writable           of a file the job holds a lock on through that fd: by
//                                  copy, kept coherent with the file at home at the
//                                  lock points of that fd: written back before each lock
//                                  call, home's changes taken after each lock taken
//                                  (shared_file_mapping.h: sqlite's WAL index); without
//                                  a lock, ENODEV (callers fall back to read/write)
//
// The fd is looked at home first (fstat): a regular file is copied up to its end (bytes
// past it read as zeros instead of raising SIGBUS); /dev/zero gives anonymous memory
// (private or shared, as asked) without a copy; anything else (a pipe, a socket, another
// device) is ENODEV. Runs in the SIGSYS handler: raw system calls and forwarded calls
// only.
#pragma once

#include "shim/forward/trapped_call.h"

namespace mig::forward {

// mmap(2) whose fd (argument 4) is a home fd: the new mapping's address or a negative
// errno.
long mapHomeFile(const TrappedCall& c);

}  // namespace mig::forward
