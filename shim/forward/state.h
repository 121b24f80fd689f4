// The process-wide state of system call forwarding, a member of the shim's Runtime
// (zero-initialised, saved and restored with the rest of memory): whether forwarding
// is on, the Config it runs with (which fds are home fds), and the registry of the
// threads' relay connections. Every field is read from the SIGSYS handler, so all
// changes after activation are single atomic stores or read-modify-writes.
#pragma once

#include "rsc/file_identity.h"
#include "shim/control_protocol.h"
#include "shim/forward/forward_config.h"
#include "shim/forward/shared_file_mapping.h"

#include <atomic>
#include <cstdint>

namespace mig::forward {

enum Status : uint32_t {
  kInactive = 0,  // everything runs locally (never migrated, or restarted without a Config)
  kActive = 1,    // the handler forwards what concerns home
};

inline constexpr uint32_t kMaxConnections = 1024;
inline constexpr uint32_t kMaxAwayChildren = 64;
inline constexpr uint32_t kLocalHashSlots = 256;

struct State {
  std::atomic<uint32_t> status;
  // Futex word: 0 from each checkpoint on, 1 once the control thread of a restored
  // process has activated (or decided against) forwarding; restored threads wait on it.
  std::atomic<uint32_t> released;
  // Bumped whenever every connection is dropped (checkpoint, activation): a thread's
  // connection is only valid if it was made in the current generation.
  std::atomic<uint32_t> generation;
  // The working directory is a local one (the last chdir went to a local path).
  std::atomic<uint32_t> cwdLocal;
  // Pipelined writes issued so far, by every thread (rsc::RequestHeader::order).
  std::atomic<uint64_t> pipelineOrder;
  // The number of the last pipelined write to a regular file (write-behind), which the
  // calls that wait for file writes carry (rsc::writesToWaitFor).
  std::atomic<uint64_t> fileWriteOrder;
  // MIG_SYNC_WRITES=1 in the program's environment: writes to home files wait for
  // their result (write-behind off).
  bool syncWrites;
  Config config;  // forwardedFds bits change with atomic builtins
  // Each thread's relay connection (and signal watch), so checkpoints can drop them
  // and the program's close() and dup2() cannot take them from us: a slot word
  // (slotFd, slotBusy below; 0 = free slot).
  std::atomic<uint64_t> connections[kMaxConnections];
  std::atomic<uint32_t> connectionSlots;  // slots ever used: the rest are free
  // Real PIDs of the children forked here, by slot (child_pids.h); 0 = free, -1 =
  // reserved for a fork in progress.
  std::atomic<int32_t> childReal[kMaxAwayChildren];
  // Home said this process has no child there (ECHILD to a wait for any child): a
  // process away from home forks only here, so that stays true (child_pids.h).
  std::atomic<bool> noChildAtHome;
  // The child-table reservation for a posix_spawn-like child about to be made (clone.cc): it
  // reads it from its copy of memory.
  std::atomic<int32_t> spawnVpid;
  // What the application set for SIGSYS, which the shim keeps for itself.
  control::KernelSigaction appSigsys;
  // Content hashes of this host's system files (same_file.h), emptied at every restore:
  // they are this host's, and the next restore may be on another.
  rsc::HashCache<kLocalHashSlots> localHashes;
  // After a hop back home: the deputy's carried answers (carried_replies.h), mapped by
  // the control thread before the threads are released; null when none.
  const uint8_t* carried;
  uint64_t carriedSize;
  // Shared writable mappings of home files kept as local copies (shared_file_mapping.h).
  SharedMappings sharedMappings;
  // Bit n: the job holds (or took since the move) a lock through home fd n, so the file
  // is one whose sharing it orders with locks: only such a file may be mapped shared
  // and writable (shared_file_mapping.h).
  uint64_t lockedFds[kMaxFds / 64];
  // A process forked away from home took a record lock at home (rsc/child_locks.h): its
  // closes of home fds and its end tell the deputy's lock keeper.
  std::atomic<uint32_t> childLocked;
};

// Is fd a home fd (its local number a stand-in)?
inline bool isForwardedFd(const State& s, int64_t fd) {
  if (fd < 0 || fd >= kMaxFds) return false;
  uint64_t word = __atomic_load_n(&s.config.forwardedFds[fd / 64], __ATOMIC_ACQUIRE);
  return (word >> (fd % 64)) & 1;
}

inline void setForwardedFd(State& s, int64_t fd, bool on) {
  if (fd < 0 || fd >= kMaxFds) return;
  uint64_t bit = 1ull << (fd % 64);
  if (on) {
    __atomic_fetch_or(&s.config.forwardedFds[fd / 64], bit, __ATOMIC_ACQ_REL);
  } else {
    __atomic_fetch_and(&s.config.forwardedFds[fd / 64], ~bit, __ATOMIC_ACQ_REL);
    __atomic_fetch_and(&s.config.streamFds[fd / 64], ~bit, __ATOMIC_ACQ_REL);
    __atomic_fetch_and(&s.config.pipelinedFds[fd / 64], ~bit, __ATOMIC_ACQ_REL);
  }
}

inline bool isStreamFd(const State& s, int64_t fd) {
  if (fd < 0 || fd >= kMaxFds) return false;
  return (__atomic_load_n(&s.config.streamFds[fd / 64], __ATOMIC_ACQUIRE) >> (fd % 64)) & 1;
}

inline void setStreamFd(State& s, int64_t fd) {
  if (fd < 0 || fd >= kMaxFds) return;
  __atomic_fetch_or(&s.config.streamFds[fd / 64], 1ull << (fd % 64), __ATOMIC_ACQ_REL);
}

inline bool isPipelinedFd(const State& s, int64_t fd) {
  if (fd < 0 || fd >= kMaxFds) return false;
  return (__atomic_load_n(&s.config.pipelinedFds[fd / 64], __ATOMIC_ACQUIRE) >> (fd % 64)) & 1;
}

// fd's open file went into (or out of) non-blocking mode: a write that would say
// EAGAIN must not be pipelined.
inline void setPipelinedFd(State& s, int64_t fd, bool on) {
  if (fd < 0 || fd >= kMaxFds) return;
  const uint64_t bit = 1ull << (fd % 64);
  if (on) __atomic_fetch_or(&s.config.pipelinedFds[fd / 64], bit, __ATOMIC_ACQ_REL);
  else __atomic_fetch_and(&s.config.pipelinedFds[fd / 64], ~bit, __ATOMIC_ACQ_REL);
}

inline bool isLockedFd(const State& s, int64_t fd) {
  if (fd < 0 || fd >= kMaxFds) return false;
  return (__atomic_load_n(&s.lockedFds[fd / 64], __ATOMIC_ACQUIRE) >> (fd % 64)) & 1;
}

inline void setLockedFd(State& s, int64_t fd, bool on) {
  if (fd < 0 || fd >= kMaxFds) return;
  const uint64_t bit = 1ull << (fd % 64);
  if (on) __atomic_fetch_or(&s.lockedFds[fd / 64], bit, __ATOMIC_ACQ_REL);
  else __atomic_fetch_and(&s.lockedFds[fd / 64], ~bit, __ATOMIC_ACQ_REL);
}

// A slot of State::connections: fd + 1 of the shim's fd in the low half, and in the
// high half fd + 1 of the number a system call of its thread is using right now (0:
// none), which a move of the fd (moveConnectionFd) waits to see go. One word, so the
// owner's marking and a mover's swap are single compare-exchanges.
inline int32_t slotFd(uint64_t word) { return static_cast<int32_t>(word & 0xffffffffu) - 1; }
inline int32_t slotBusy(uint64_t word) { return static_cast<int32_t>(word >> 32) - 1; }
inline uint64_t slotWord(int64_t fd, int64_t busy) {
  return (static_cast<uint64_t>(busy + 1) << 32) | static_cast<uint32_t>(fd + 1);
}
// Is `fd` the shim's by this slot: its fd, or the number a call still uses (moved or
// being closed)?
inline bool slotHolds(uint64_t word, int64_t fd) { return fd >= 0 && (slotFd(word) == fd || slotBusy(word) == fd); }

// Is fd one of the threads' relay connections?
bool isConnectionFd(int64_t fd);

// The program's dup2/dup3 onto relay connection `fd` (isConnectionFd): the
// connection is copied to the highest free number (shim::copyOwnFd) and its slot
// switched to it; once no call of its thread still uses `fd`, the number is the
// program's to take (its dup2 replaces the copy left there). False if there is no
// free number, or its thread's call held `fd` too long (bounded wait): then nothing
// changed.
bool moveConnectionFd(int32_t fd);

}  // namespace mig::forward
