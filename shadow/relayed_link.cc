// Home's side of a job's relayed link (its host's shadowd runs --no-direct-link): the
// job's link process logs in to this shadowd on a connection of the job's own and asks
// Node.deputy (relayed) on it, so that login is the job's link home. No deputy watches
// that path (a direct link's deputy does, direct_link.h), so this shadowd keeps the same
// rule: a login that breaks and is not made again within the job's limit loses the job
// here (docs/design.md "Exactly-once after a broken link"). The link process, which
// has the same limit (Node.deputy's answer), kills the job where it runs.
#include "shadow/services.h"

#include <sys/wait.h>

namespace mig::shadow {

uint64_t relayLimitMs(const Daemon& d, const HomeJob& job) {
  return job.ownLostAfterMs > 0 ? job.ownLostAfterMs : d.config().linkLostAfterMs;
}

void relayedLinkDown(Daemon& d, uint64_t jobId, uint64_t generation, kj::StringPtr since) {
  HomeJob* job = nullptr;
  KJ_IF_MAYBE(j, d.homeJobs().find(jobId)) { job = j->get(); }
  // Ended, given up, moved on, or its link made again on a newer login: not ours.
  if (job == nullptr || job->ended || !job->relayed() || job->relayLogin != generation) return;
  const uint64_t limitMs = relayLimitMs(d, *job);
  d.log(kj::str("job ", jobId, ": its link home from ", job->location, " through this shadowd is down (", since,
                "); the job is lost unless it is back within ", limitMs / 1000.0, " s"));
  auto location = kj::str(job->location);
  job->relayLost = d.io().provider->getTimer()
                       .afterDelay(limitMs * kj::MILLISECONDS)
                       .then([&d, jobId, generation, limitMs, location = kj::mv(location)]() -> kj::Promise<void> {
                         HomeJob* job = nullptr;
                         KJ_IF_MAYBE(j, d.homeJobs().find(jobId)) { job = j->get(); }
                         if (job == nullptr || job->ended || job->relayLogin != generation ||
                             job->location != location || job->migrating) {
                           return kj::READY_NOW;  // it moved, came back or ended meanwhile
                         }
                         markLinkLost(d, *job, limitMs, limitMs);
                         // The deputy ends as a job that exited with 87 (its parent's wait
                         // returns); it exits before it answers.
                         return d.deputyOf(*job).then([](rpc::Deputy::Client deputy) {
                           auto req = deputy.endedRequest();
                           req.setStatus(W_EXITCODE(87, 0));
                           return req.send().ignoreResult().catch_([](kj::Exception&&) {});
                         });
                       })
                       .eagerlyEvaluate([&d, jobId](kj::Exception&& e) {
                         d.log(kj::str("job ", jobId, ": giving it up failed: ", e.getDescription()));
                       });
}

}  // namespace mig::shadow
