// shadowd's Prometheus metrics (`shadowd --metrics-port PORT`, docs/metrics.md): what it
// counts as it works (moves and their outcome, freeze times, calls forwarded home, peer
// links made again) and, at each scrape, its jobs by state. Served over HTTP by KJ's
// HTTP server on 127.0.0.1 only: the figures say which programs run here and where.
#pragma once

#include "shadow/move_history.h"

#include <kj/async-io.h>
#include <kj/string.h>

#include <cstdint>

namespace mig::shadow {

class Daemon;

struct Metrics {
  // Freeze-time histogram bounds, in seconds: from a small job's few ms to a large
  // one's seconds.
  static constexpr double kFreezeBounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  static constexpr size_t kBuckets = sizeof kFreezeBounds / sizeof kFreezeBounds[0];

  uint64_t movesOk = 0;
  uint64_t movesFailed = 0;
  uint64_t freezeCount[kBuckets] = {};  // moves frozen at most kFreezeBounds[i] (not cumulative)
  uint64_t freezeOver = 0;              // frozen longer than the last bound
  double freezeSumSeconds = 0;
  uint64_t forwardedCalls = 0;          // system calls of jobs here forwarded to their homes
  uint64_t forwardedBytesOut = 0;       // their requests
  uint64_t forwardedBytesIn = 0;        // their replies
  uint64_t linkReconnects = 0;          // logins to a peer whose earlier link broke

  // Every move this shadowd records in its history (migctl history).
  void countMove(const Move& m);
};

// The text of a scrape (Prometheus text format 0.0.4).
kj::String renderMetrics(Daemon& d);

// Serves GET /metrics on `listener` (shadowd's main listens on 127.0.0.1:PORT, so that
// a port it cannot have stops it at start) until shadowd stops.
kj::Promise<void> serveMetrics(Daemon& d, kj::Own<kj::ConnectionReceiver> listener);

}  // namespace mig::shadow
