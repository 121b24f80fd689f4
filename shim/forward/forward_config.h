// What a restored process needs to know to send its location-dependent calls home:
// written by `migctl restart` on the destination host (run by shadowd) into a memfd
// whose number reaches the shim through the restore plan (Header::configFd) and
// ResumeInfo::configFd; the shim reads it once after the restore and closes it.
// Fixed layout, no pointers: it crosses an exec.
#pragma once

#include <fcntl.h>
#include <stdint.h>

namespace mig::forward {

inline constexpr uint64_t kConfigMagic = 0x31474643474947ull;  // "MIGCFG1"
inline constexpr uint32_t kMaxFds = 4096;          // fds tracked as forwarded: 0 .. kMaxFds-1
inline constexpr uint32_t kMaxLocalPaths = 8;
inline constexpr uint32_t kPathMax = 256;

struct Config {
  uint64_t magic;
  uint32_t size;                 // sizeof(Config) of the writer
  uint32_t localPathCount;
  char relaySocket[108];         // unix stream socket of the local shadowd's call relay
  uint8_t reserved0[4];
  uint64_t jobId;
  uint8_t token[32];             // the job's token: the relay refuses a connection without it
  uint64_t forwardedFds[kMaxFds / 64];  // bit n: fd n is a home fd (its local fd is a stand-in)
  uint64_t streamFds[kMaxFds / 64];     // bit n: fd n is a stream (pipe, tty, socket): its
                                        // reads and writes may wait as long as they like
  char localPaths[kMaxLocalPaths][kPathMax];  // directory prefixes every host has (opened locally)
  int64_t monotonicOffsetNs;     // add to this host's CLOCK_MONOTONIC to get the job's
  int64_t realtimeOffsetNs;      // add to this host's CLOCK_REALTIME to get home's
  uint64_t pipelinedFds[kMaxFds / 64];  // bit n: fd n is a stream in blocking mode, or a
                                        // regular file open for writing (writesBehind):
                                        // writes to it are pipelined (rsc::kNoReply)
  // A child the job forked away from home, and the programs either runs, forward
  // through the job's deputy too, but their fd tables are their own: the deputy's
  // mirrors the job's (child_table.h).
  uint32_t ownTable;             // 1: this process's fd table is not the deputy's mirror
  int32_t handoffVpid;           // across exec (exec_handoff.h): the PIDs the process has,
  int32_t handoffVppid;          // 0 when none
  uint32_t network;              // NetworkPolicy: where the sockets it creates here are
  uint64_t handoffPipelineOrder;  // across exec: State::pipelineOrder
  uint64_t ownedFds[kMaxFds / 64];  // bit n: fd n's home side was opened by this process
                                    // (ownTable), so closing fd n closes it at home
  int32_t homeFd[kMaxFds];       // ownTable: fd n's number at home, + 1 (0: the same number)
  // A hop back home (deputy/homecoming.h): restored in its deputy's process, the job
  // runs local again and forwards nothing; carriedFd holds the deputy's answers the
  // job may not have read before its freeze (carried_replies.h), -1 when none.
  uint32_t homecoming;
  int32_t carriedFd;
  // A child born away coming home with its parent (migctl/tree_restart.h): the deputy's
  // fds are held at homeFdBase + i, heldFds[i] the deputy's number of each (also its
  // high ones, the home files such a child opened), for the shim to put each home fd at
  // the child's own number (activation.cc). homeFdBase 0: none.
  int32_t homeFdBase;
  uint32_t heldCount;
  int32_t heldFds[kMaxFds];
};

// Whether the writes to a regular file at home open with these flags (open's, F_GETFL's)
// may go behind, pipelined: it is open for writing, and not for writes that must be
// done when they return (O_SYNC, O_DSYNC) or whose errors come at once (O_DIRECT's
// alignment). docs/design.md "Writes to home files go behind".
constexpr bool writesBehind(int flags) {
  return (flags & O_ACCMODE) != O_RDONLY && (flags & (O_PATH | O_DSYNC | O_DIRECT)) == 0;
}

// Config::network (rpc::NetworkPolicy, migctl migrate --help).
enum NetworkPolicy : uint32_t {
  kNetworkHome = 0,    // internet sockets the job creates are made at home
  kNetworkLocal = 1,   // ... on the host it runs on
  kNetworkRebind = 2,  // ... on the host it runs on, which also took over its TCP listeners
                       // at restore (rebind.h); its TCP connections were reset
};

// What a connection to the relay is for (Hello::kind).
enum HelloKind : uint32_t {
  kCallConnection = 0,       // a thread's forwarded calls (rsc/wire.h)
  kReadinessStandIn = 1,     // the local stand-in of home fd Hello::fd (readiness_stand_in.h)
  kBornAwayCalls = 2,        // ... of a process born away from home (Config::ownTable): it
                             // pipelines nothing and its order is its parent's at the fork
                             // (or 0), so the relay does not number the job's writes from it
};

// First bytes on every new connection to the relay.
struct Hello {
  uint32_t magic;                // kHelloMagic
  uint32_t length;               // sizeof(Hello)
  uint64_t jobId;
  uint8_t token[32];
  uint64_t order;                // pipelined writes the job has issued so far (wire.h)
  uint32_t kind;                 // HelloKind
  int32_t fd;                    // kReadinessStandIn: the fd's number at home
};
inline constexpr uint32_t kHelloMagic = 0x48435352u;  // "RSCH"

}  // namespace mig::forward
