// The jobs home's shadowd gave up as lost (their link home stayed broken past the
// limit, Local.linkLost), kept in a file next to the spool's images so that a
// restarted shadowd (systemctl restart, an upgrade) still lists them: their deputies
// have exited with status 87, so no process is left to learn them back from, as a
// restarted shadowd learns the jobs that still run (their deputies, their link
// processes). The file holds the newest kLostJobsKept; it is written whole,
// atomically, whenever a job is lost, and read at start-up.
#pragma once

#include <kj/array.h>
#include <kj/string.h>
#include <kj/vector.h>

#include <cstdint>
#include <sys/types.h>

namespace mig::shadow {

struct LostJob {
  uint64_t id = 0;
  pid_t vpid = 0;          // its PID at home (its deputy's, gone)
  double startedAt = 0;    // CLOCK_REALTIME seconds
  double lostAt = 0;
  kj::String location;     // where it ran when its link broke
  kj::String command;
};

// Enough for every job a host loses between two looks; the oldest go first.
constexpr size_t kLostJobsKept = 100;

// <spool dir>/lost-jobs
kj::String lostJobsPath(kj::StringPtr spoolDir);

// What the file holds (none if it is missing); a line that does not read is skipped.
kj::Vector<LostJob> readLostJobs(kj::StringPtr path);

// Replaces the file with `jobs`, newest kLostJobsKept only (by lostAt); returns the
// error (one line) or an empty string.
kj::String writeLostJobs(kj::StringPtr path, kj::ArrayPtr<const LostJob> jobs);

}  // namespace mig::shadow
