// Shared writable mappings of home files in a migrated process: a local copy kept
// coherent with the file at home at the file's lock points, which is how sqlite's WAL
// index (DB-shm) moves.
//
// Processes that share memory through a file order their accesses with locks; sqlite's
// WAL index is read and written directly by every connection, each access ordered by
// fcntl locks on the -shm file (the write lock, the checkpointer's, the read marks',
// the DMS lock). The kernel here cannot map a file open at home, so the mapping is an
// anonymous copy (home_mmap.h) plus a twin: the bytes as they last agreed with home.
// The rule, at every lock call on the fd the file was mapped by:
//
//   before the call goes home (take or release)   the bytes the job changed (copy !=
//                                                  twin) are written home, exact runs,
//                                                  from the highest address down
//   after a call that takes a lock (or tries to)   the bytes home changed (file != twin)
//                                                  are taken into the copy
//
// So whatever the job wrote under a lock is at home before the lock is free for
// anyone else, and whatever another process wrote under a lock is in the copy once the
// job holds (or tried for) a lock after it. sqlite's lock-free read of the index
// header is checked again once the read lock is held (the re-check sees the refreshed
// header). The same write-back happens at msync, munmap, close of the fd and before a
// checkpoint; after a restore on another host the whole copy is read again from home.
//
// Only a file the job orders its sharing of with locks is mapped so: one it holds a lock
// on through that fd (taken since the move, or held at it). A shared writable mapping of
// any other home file is refused (ENODEV) as before: its sharers may coordinate through
// futexes or atomics in the memory itself (LMDB's lock file, a shm_open ring), which a
// copy cannot follow. A lock taken through another fd of the file does not count.
// A shared read-only mapping of such a file is tracked too, without the write-back
// (else it stays a snapshot).
//
// A job that maps such a file at home and then moves: the checkpoint (prepare) lists
// the process's shared file mappings of files it locks and the fd each is reached by; the
// mapping travels as private memory (resources/proc_page_source.cc) and this table,
// in the shim's memory, travels with it. After a hop back home each copy is mapped
// from the file again (shared, in place).
//
// Everything here runs in the SIGSYS handler or the control thread with the job's
// threads parked: raw system calls and forwarded calls only, no allocation beyond
// anonymous mappings made with mmap(2), no lock.
#pragma once

#include "shim/forward/trapped_call.h"

#include <atomic>
#include <cstdint>

namespace mig::forward {

inline constexpr uint32_t kMaxSharedMappings = 256;

struct SharedMapping {
  std::atomic<uint64_t> addr;  // 0: a free slot
  uint64_t length;
  int64_t fileOffset;
  int32_t fd;  // the job's fd the file is reached by (-1: closed; a snapshot from then on)
  uint32_t prot;
  uint32_t reread;               // read the whole copy again from home at the next restore
  uint64_t twin;                 // the bytes as they last agreed with home (length), then a scratch area (length)
  uint64_t twinBase, twinBytes;  // the anonymous mapping twin lies in (munmap'd with the slot)
};

struct SharedMappings {
  SharedMapping slots[kMaxSharedMappings];
  std::atomic<uint32_t> used;  // slots ever used: the rest are free (a job without any pays one load)
};

// mmap(2) of a home fd, MAP_SHARED and PROT_WRITE: the copy (made by mapHomeFile's
// caller as for a read-only mapping, at `addr`) is tracked; the mapping's address or a
// negative errno (-ENOMEM when the table is full: the copy is unmapped).
long trackSharedMapping(long addr, const TrappedCall& c);

// Does the fd have tracked mappings?
bool fdHasSharedMappings(int32_t fd);

// Is the call a lock point of a tracked mapping: F_SETLK & co. or flock on its fd?
bool isSharedMappingLockCall(const TrappedCall& c);

// Does the call (fcntl F_SETLK & co. or flock) take a lock (as against releasing one)?
bool isLockTaking(const TrappedCall& c);

// Lock points (fcntl F_SETLK/F_SETLKW/F_OFD_SETLK/F_OFD_SETLKW, flock). Before: write
// back the fd's mappings; returns whether the call takes a lock (as against releasing
// one). After (taking): take home's changes.
bool beforeLockCall(const TrappedCall& c);
void afterLockTaken(int32_t fd);

// munmap, mremap, msync, madvise of a range: what it overlaps is written back first;
// munmap and mremap then stop tracking the range (the rest of a mapping stays tracked).
void beforeRangeCall(const TrappedCall& c);
// After msync: home's changes taken in. After madvise(MADV_DONTNEED and the like)
// dropped the copy's pages: read them again.
void afterRangeCall(const TrappedCall& c, long result);

// close of an fd (or a dup2 over it): its mappings are written back; they stay
// snapshots from then on (sqlite unmaps before it closes).
void beforeFdClosed(int32_t fd);
void beforeFdsClosed(uint32_t first, uint32_t last);  // close_range

// Control thread, checkpoint: while migrated, write everything back (the next host
// starts from home's file); at home, list the shared writable file mappings the
// process holds and the fd each is reached by, to be tracked wherever it resumes.
void prepareSharedMappingsForCheckpoint(bool migrated);

// Control thread, after a restore, before the threads run. Migrated (connected to
// home): every tracked copy read again from home, with a new twin. Back home: every
// copy mapped from its file again, in place, and no longer tracked.
void sharedMappingsAfterRestore(bool migrated);

}  // namespace mig::forward
