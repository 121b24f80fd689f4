// See daemon.h.
#include "shadow/daemon.h"
#include "shadow/error.h"

#include "shadow/balance.h"
#include "shadow/child_process.h"
#include "shadow/lost_jobs.h"
#include "shadow/network_policy.h"
#include "shadow/send_command.h"
#include "shadow/spooled_pages.h"
#include "shadow/tree_members.h"

#include <capnp/message.h>
#include <kj/debug.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <sys/wait.h>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

// The longest one hop may take, transfer and restore included.
constexpr int kSenderTimeoutMinutes = 30;

// A hop home kept the job here frozen and stopped for home's answer to its commit, and
// none came (home's shadowd died then, or a partition): home is asked again every 2 s
// (Node.homecomingOutcome) until it says that its deputy serves the job away (the job
// resumes here: SIGCONT) or that home took it (it runs or ran there: the copy here is
// killed), or until the job's link's lost limit has passed since the commit with no
// answer: the job is lost as after any link broken that long (killed here; its deputy
// at home gave it up too, status 87).
struct KeptHome {
  uint64_t jobId;
  kj::Array<kj::byte> token;
  kj::String home;
  pid_t vpid;
  pid_t realPid;
  kj::TimePoint since;
};

constexpr uint64_t kKeptHomeAskMs = 2000;

kj::Promise<void> decideKeptHome(Daemon& d, kj::Own<KeptHome> k) {
  // The job's process here is still the one kept (its record would be gone with it).
  HostedJob* job = nullptr;
  KJ_IF_MAYBE(j, d.hostedJobs().find(k->jobId)) { job = j->get(); }
  if (job == nullptr || job->realPid != k->realPid) return kj::READY_NOW;
  auto& timer = d.io().provider->getTimer();
  const uint64_t limitMs = job->calls.get() != nullptr && job->calls->lostAfterMs() > 0 ? job->calls->lostAfterMs()
                                                                                  : d.config().linkLostAfterMs;
  if (timer.now() - k->since >= limitMs * kj::MILLISECONDS) {
    kill(k->realPid, SIGKILL);
    d.log(kj::str("job ", k->jobId, ": home did not say within the link's lost limit (", limitMs / 1000.0,
                  " s) whether it took the job kept here for its hop home: it is lost, ended here (SIGKILL)"));
    return kj::READY_NOW;
  }
  auto asked = d.peer(k->home).then([id = k->jobId, token = kj::heapArray<kj::byte>(k->token),
                                     vpid = k->vpid](rpc::Node::Client node) {
    auto req = node.homecomingOutcomeRequest();
    req.setJobId(id);
    req.setToken(token);
    req.setVpid(vpid);
    return req.send().then([](auto r) { return r.getOutcome(); });
  });
  return timer.timeoutAfter(kKeptHomeAskMs * kj::MILLISECONDS, kj::mv(asked))
      .then([](rpc::HomecomingOutcome o) { return o; },
            [](kj::Exception&&) { return rpc::HomecomingOutcome::UNDECIDED; })
      .then([&d, k = kj::mv(k)](rpc::HomecomingOutcome o) mutable -> kj::Promise<void> {
        KJ_IF_MAYBE(j, d.hostedJobs().find(k->jobId)) {
          if ((*j)->realPid == k->realPid && o == rpc::HomecomingOutcome::RESUME) {
            kill(k->realPid, SIGCONT);
            d.log(kj::str("job ", k->jobId, ": home says its deputy serves it (the hop home did not take it): "
                          "resumed here"));
            return kj::READY_NOW;
          }
          if ((*j)->realPid == k->realPid && o == rpc::HomecomingOutcome::END) {
            kill(k->realPid, SIGKILL);
            d.log(kj::str("job ", k->jobId, ": home says it took the job (its hop home went on there): the copy "
                          "kept here is ended"));
            return kj::READY_NOW;
          }
        }
        return d.io().provider->getTimer().afterDelay(kKeptHomeAskMs * kj::MILLISECONDS).then(
            [&d, k = kj::mv(k)]() mutable { return decideKeptHome(d, kj::mv(k)); });
      });
}

}  // namespace

kj::String lastLine(kj::StringPtr text) {
  size_t end = text.size();
  while (end > 0 && text[end - 1] == '\n') --end;
  size_t begin = end;
  while (begin > 0 && text[begin - 1] != '\n') --begin;
  return kj::heapString(text.slice(begin, end));
}

double nowSeconds() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec / 1e9;
}

Daemon::Daemon(kj::AsyncIoContext& io, DaemonConfig config, ClusterKey key)
    : io_(io), config_(kj::mv(config)), key_(kj::mv(key)), errorHandler_(*this), tasks_(errorHandler_),
      runnable_(config_.policy.balance.windowSeconds, config_.policy.balance.sampleSeconds) {
  moves_.setObserver([this](const Move& m) { metrics_.countMove(m); });
}

double Daemon::cpus() const {
  if (config_.policy.balance.cpus > 0) return config_.policy.balance.cpus;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<double>(n) : 1;
}

kj::Promise<void> Daemon::hostedJobGone(uint64_t id) {
  KJ_IF_MAYBE(j, hostedJobs().find(id)) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    (*j)->onGone = kj::mv(paf.fulfiller);
    return paf.promise.exclusiveJoin(io_.provider->getTimer().afterDelay(10 * kj::SECONDS));
  }
  return kj::READY_NOW;
}

void Daemon::ErrorHandler::taskFailed(kj::Exception&& e) { d_.log(kj::str("error: ", e.getDescription())); }

void Daemon::log(kj::StringPtr line) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  localtime_r(&ts.tv_sec, &tm);
  char when[32];
  strftime(when, sizeof(when), "%H:%M:%S", &tm);
  fprintf(stderr, "%s.%03ld %s: %s\n", when, ts.tv_nsec / 1000000, config_.logName.cStr(), line.cStr());
  fflush(stderr);
}

kj::String Daemon::resolveNode(kj::StringPtr nameOrAddress) const {
  KJ_IF_MAYBE(a, config_.nodes.find(nameOrAddress)) { return kj::str(*a); }
  // Another system's name for a node ([node_aliases] of the policy file, e.g. Slurm's).
  KJ_IF_MAYBE(node, aliasTarget(config_.policy, nameOrAddress)) {
    KJ_IF_MAYBE(a, config_.nodes.find(*node)) { return kj::str(*a); }
  }
  return kj::str(nameOrAddress);
}

kj::String Daemon::nodeName(kj::StringPtr address) const {
  for (auto& e : config_.nodes) {
    if (e.value == address) return kj::str(e.key);
  }
  return kj::str(address);
}

kj::Promise<rpc::Node::Client> Daemon::peer(kj::StringPtr nameOrAddress) {
  auto address = resolveNode(nameOrAddress);
  KJ_IF_MAYBE(link, peers_.find(address)) { return (*link)->node; }
  require(key_.present(), "this shadowd has no cluster key: it cannot reach other hosts (--cluster-key FILE)");
  return loginToPeer(io_, key_, config_.linkMode, address).then([this, address = kj::mv(address)](kj::Own<PeerLink> link) mutable {
    // Two logins to one host may race (a job's calls home and a hop's setup check, when
    // home is this host): the first link stays, since capabilities taken from it are in
    // use and would fail with it ("RpcSystem was destroyed"); the second is dropped.
    KJ_IF_MAYBE(kept, peers_.find(address)) { return (*kept)->node; }
    rpc::Node::Client node = link->node;
    // Forget the link when it breaks, so the next use connects again.
    auto key = kj::str(address);
    if (linkedBefore_.find(address) != nullptr) {
      ++metrics_.linkReconnects;
    } else {
      linkedBefore_.insert(kj::str(address), true);
    }
    tasks_.add(link->client->onDisconnect().then([this, key = kj::mv(key)]() { dropPeer(key); }));
    peers_.insert(kj::mv(address), kj::mv(link));
    return node;
  });
}

void Daemon::dropPeer(kj::StringPtr address) { peers_.erase(address); }

HomeJob* Daemon::homeJobByVpid(pid_t vpid) {
  for (auto& e : homeJobs_) {
    if (e.value->vpid == vpid && !e.value->lost) return e.value.get();  // a lost job's PID may be reused
  }
  return nullptr;
}

HostedJob* Daemon::hostedJob(uint64_t id, kj::ArrayPtr<const kj::byte> token) {
  KJ_IF_MAYBE(j, hostedJobs_.find(id)) {
    if (sameBytes((*j)->token, token)) return j->get();
  }
  return nullptr;
}

HomeJob& Daemon::homeJob(uint64_t id, kj::ArrayPtr<const kj::byte> token) {
  KJ_IF_MAYBE(j, homeJobs_.find(id)) {
    if (sameBytes((*j)->token, token)) return **j;
  }
  fail(kj::str(kUnknownJob));
}

kj::Promise<rpc::Deputy::Client> Daemon::deputyOf(HomeJob& job) {
  KJ_IF_MAYBE(d, job.deputy) { return *d; }
  auto paf = kj::newPromiseAndFulfiller<rpc::Deputy::Client>();
  job.deputyWaiters.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

void Daemon::deputyRegistered(HomeJob& job, rpc::Deputy::Client deputy) {
  job.deputy = deputy;
  for (auto& w : job.deputyWaiters) w->fulfill(rpc::Deputy::Client(deputy));
  job.deputyWaiters.clear();
}

void keepRecordAtDeputy(Daemon& d, HomeJob& job) {
  auto record = kj::heap<capnp::MallocMessageBuilder>();
  auto r = record->initRoot<rpc::HomeRecord>();
  r.setLocation(job.location);
  r.setCommand(job.command);
  r.setStartedAt(job.startedAt);
  r.setTreeRoot(job.treeRoot);
  r.setRelayed(job.relayed());
  const uint64_t id = job.id;
  d.tasks().add(d.deputyOf(job)
                    .then([record = kj::mv(record)](rpc::Deputy::Client deputy) mutable {
                      auto req = deputy.keepRecordRequest();
                      req.setRecord(record->getRoot<rpc::HomeRecord>());
                      return req.send().ignoreResult();
                    })
                    .catch_([&d, id](kj::Exception&& e) {
                      // An older deputy, or one that just ended: a restart then loses the job's record.
                      if (e.getType() != kj::Exception::Type::DISCONNECTED) {
                        d.log(kj::str("job ", id, ": its deputy did not keep its record: ", oneLine(e.getDescription())));
                      }
                    }));
}

void saveLostJobs(Daemon& d) {
  kj::Vector<LostJob> lost;
  for (auto& e : d.homeJobs()) {
    const HomeJob& j = *e.value;
    if (!j.lost) continue;
    LostJob l;
    l.id = j.id;
    l.vpid = j.vpid;
    l.startedAt = j.startedAt;
    l.lostAt = j.lostAt;
    l.location = kj::str(j.location);
    l.command = kj::str(j.command);
    lost.add(kj::mv(l));
  }
  auto why = writeLostJobs(lostJobsPath(d.config().spoolDir), lost);
  if (why.size() > 0) d.log(kj::str("the lost jobs will not be listed after a restart: ", why));
}

void markLinkLost(Daemon& d, HomeJob& job, uint64_t downMs, uint64_t limitMs) {
  job.lost = true;
  job.lostAt = nowSeconds();
  job.ended = true;
  d.log(kj::str("job ", job.id, " (PID ", job.vpid, ") is lost: its link from ", job.location, " has been broken for ",
                downMs / 1000.0, " s (its limit: ", limitMs / 1000.0, " s); its deputy exits with status 87"));
  saveLostJobs(d);
}

void loadLostJobs(Daemon& d) {
  auto lost = readLostJobs(lostJobsPath(d.config().spoolDir));
  for (auto& l : lost) {
    if (d.homeJobs().find(l.id) != nullptr) continue;
    auto job = kj::heap<HomeJob>();
    job->id = l.id;
    job->vpid = l.vpid;
    job->command = kj::mv(l.command);
    job->location = kj::mv(l.location);
    job->startedAt = l.startedAt;
    job->lostAt = l.lostAt;
    job->lost = true;
    job->ended = true;  // no deputy: nothing to pass on, nothing to end
    d.homeJobs().insert(l.id, kj::mv(job));
  }
  if (lost.size() > 0) d.log(kj::str(lost.size(), " lost job(s) listed again, as an earlier shadowd left them"));
}

kj::Promise<void> Daemon::runSender(rpc::MigrationResult::Builder result, pid_t realPid, uint64_t jobId,
                                    kj::ArrayPtr<const kj::byte> token, kj::StringPtr home, pid_t vpid,
                                    kj::StringPtr command, kj::StringPtr to, rpc::NetworkPolicy network, bool becomeDeputy,
                                    rpc::MigrationMode mode, bool only, kj::StringPtr treeMembers) {
  ChildSpec spec;
  spec.argv.add(kj::str(config_.migctl));
  spec.argv.add(kj::str("send"));
  spec.argv.add(kj::str(realPid));
  spec.argv.add(kj::str("--to"));
  spec.argv.add(kj::str(to));
  spec.argv.add(kj::str("--key"));
  spec.argv.add(kj::str(config_.keyPath));
  spec.argv.add(kj::str("--job-id"));
  spec.argv.add(kj::str(jobId));
  spec.env.add(kj::str(kTokenEnv, "=", hex(token)));
  if (treeMembers != nullptr && treeMembers.size() > 0) spec.env.add(kj::str(kTreeMembersEnv, "=", treeMembers));
  spec.argv.add(kj::str("--home"));
  spec.argv.add(kj::str(home));
  spec.argv.add(kj::str("--vpid"));
  spec.argv.add(kj::str(vpid));
  spec.argv.add(kj::str("--command"));
  spec.argv.add(kj::str(command));
  addNetworkArgs(spec.argv, network);
  if (config_.linkMode == LinkMode::PLAINTEXT) spec.argv.add(kj::str("--insecure-plaintext-links"));
  if (mode != rpc::MigrationMode::BEST) {
    spec.argv.add(kj::str("--mode"));
    spec.argv.add(kj::str(mode == rpc::MigrationMode::PRECOPY    ? "precopy"
                          : mode == rpc::MigrationMode::POSTCOPY ? "postcopy"
                                                                 : "stop-and-copy"));
  }
  // Post-copy: the sender's copy of the pages goes where this shadowd finds it if the
  // sender dies (spooled_pages.h).
  if (mode == rpc::MigrationMode::POSTCOPY) {
    spec.argv.add(kj::str("--pages-file"));
    spec.argv.add(spoolPagesPath(config_.spoolDir, jobId));
  }
  if (only) spec.argv.add(kj::str("--only"));
  spec.argv.add(kj::str("--stall-timeout-ms"));
  spec.argv.add(kj::str(config_.transferTimeoutMs));
  if (becomeDeputy) {
    spec.argv.add(kj::str("--deputy"));
    spec.argv.add(kj::str(config_.deputy));
    spec.argv.add(kj::str("--shadowd-socket"));
    spec.argv.add(kj::str(config_.socketPath));
  }
  int out[2], err[2];
  KJ_SYSCALL(pipe2(out, O_CLOEXEC));
  KJ_SYSCALL(pipe2(err, O_CLOEXEC));
  spec.stdoutFd = out[1];
  spec.stderrFd = err[1];
  pid_t pid = spawnChild(spec);
  auto exited = childExit(eventPort(), pid);
  close(out[1]);
  close(err[1]);
  auto outStream = io_.lowLevelProvider->wrapInputFd(out[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  auto errStream = io_.lowLevelProvider->wrapInputFd(err[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  auto outText = outStream->readAllText().attach(kj::mv(outStream));
  auto errText = errStream->readAllText().attach(kj::mv(errStream));
  // A destination that stops answering must not keep the job frozen: the sender is
  // killed, and the job's shim resumes it when the sender's connection closes.
  auto timedOut = kj::heap<bool>(false);
  auto timeout = io_.provider->getTimer().afterDelay(kSenderTimeoutMinutes * kj::MINUTES).then([pid, t = timedOut.get()]() {
    *t = true;
    kill(pid, SIGKILL);
  });
  return kj::joinPromises(kj::arr(kj::mv(outText), kj::mv(errText)))
      .then([exited = kj::mv(exited)](kj::Array<kj::String> texts) mutable {
        return exited.then([texts = kj::mv(texts)](int status) mutable { return kj::tuple(status, kj::mv(texts)); });
      })
      .attach(timeout.eagerlyEvaluate(nullptr))
      .then([this, result, timedOut = kj::mv(timedOut), jobId, token = kj::heapArray<kj::byte>(token),
             members = kj::str(treeMembers), mode, home = kj::str(home), vpid, realPid,
             committedAt = io_.provider->getTimer().now(),
             to = kj::str(to)](kj::Tuple<int, kj::Array<kj::String>> r) mutable -> kj::Promise<void> {
        int status = kj::get<0>(r);
        auto& texts = kj::get<1>(r);
        // stdout: "MIGRATED freeze_ms image_bytes transfer_ms restore_ms ..." (send_command.cc)
        double freeze = 0, transfer = 0, restore = 0;
        unsigned long long bytes = 0;
        bool ok = status == 0 &&
                  sscanf(texts[0].startsWith("COMMITTED\n") ? texts[0].cStr() + 10 : texts[0].cStr(), "MIGRATED %lf %llu %lf %lf",
                         &freeze, &bytes, &transfer, &restore) == 4;
        if (texts[0].startsWith("COMMITTED-HOME\n")) {
          // A hop home: the job was kept here, frozen, for home's answer (send_command.cc).
          texts[0] = kj::str(texts[0].slice(15));
          ok = status == 0 && sscanf(texts[0].cStr(), "MIGRATED %lf %llu %lf %lf", &freeze, &bytes, &transfer, &restore) == 4;
          if (!ok && !(WIFEXITED(status) && WEXITSTATUS(status) == kHomeRestoreFailed)) {
            // No answer: home may run the job, or have its deputy back. It stays stopped
            // here (SIGSTOP), not resumed, rather than run twice.
            auto why = oneLine(lastLine(texts[1]));
            if (WIFSIGNALED(status) || why.size() == 0) {
              why = kj::str("the sender (migctl send) was ", describeStatus(status), " before home answered");
            }
            log(kj::str("job ", jobId, ": its hop home got no answer to its commit (", why, "): the job is kept here ",
                        "frozen and stopped until home says whether it took it"));
            tasks_.add(decideKeptHome(
                *this, kj::heap(KeptHome{jobId, kj::heapArray<kj::byte>(token), kj::str(home), vpid, realPid, committedAt})));
            // A tree's members were kept the same way, each decided by its own asking
            // ("PID:JOBID:TOKENHEX:VPID" each; home's gate let all or none run).
            KJ_IF_MAYBE(entries, parseTreeMembers(members.cStr())) {
              for (auto& m : *entries) {
                tasks_.add(decideKeptHome(*this, kj::heap(KeptHome{m.jobId, kj::mv(m.token), kj::str(home), m.vpid,
                                                                   m.pid, committedAt})));
              }
            }
            fail(kj::str("home did not answer the hop's commit (", why, "); the job is kept on ", address(),
                         " frozen and stopped until home says whether it took it (then it resumes here or ends)"));
          }
          // Exit status 7: the restore at home failed with the deputy back; the job
          // resumed here and the sender's last line says so (below, as any failure).
        }
        // A hop that went through but leaves the job unable to serve: the sender's last
        // line says why (its deputy ended as it started: the watch on that process ends
        // the job there, local_service.cc watchDeputy; post-copy lost its destination).
        static constexpr struct {
          SenderExit status;
          const char* mode;
        } kCommittedButLost[] = {{kDeputyDied, "deputy-died"}, {kPostcopyLost, "postcopy-lost"}};
        for (auto& lost : kCommittedButLost) {
          if (!ok && texts[0].startsWith("COMMITTED\n") && WIFEXITED(status) && WEXITSTATUS(status) == lost.status) {
            auto why = oneLine(lastLine(texts[1]));
            log(kj::str("job ", jobId, ": ", why));
            result.setMode(lost.mode);
            result.setProblem(why);
            return kj::READY_NOW;
          }
        }
        if (!ok && texts[0].startsWith("COMMITTED\n")) {
          // The job was given up here (two-phase commit, send_command.cc) but the
          // destination did not confirm that it runs: not a failure that leaves the
          // job here, and not a success either.
          auto why = oneLine(lastLine(texts[1]));
          if (WIFSIGNALED(status) || why.size() == 0) {
            why = kj::str("the sender (migctl send) was ", describeStatus(status), " before it could ask");
          }
          log(kj::str("job ", jobId, ": its sender gave it up but its commit at ", to, " failed (", why,
                      "): committing it from here"));
          // A post-copy sender may have died with pages still to send: they come from here.
          if (mode == rpc::MigrationMode::POSTCOPY) serveSpooledPages(*this, jobId, token, to);
          // The destination keeps a ready job for the transfer timeout: commit it from here.
          // A tree's members were given up too (send_command.cc sendTree): each is
          // committed after the root ("PID:JOBID:TOKENHEX[:VPID]" each).
          auto others = kj::heap<kj::Vector<kj::Tuple<uint64_t, kj::Array<kj::byte>>>>();
          KJ_IF_MAYBE(entries, parseTreeMembers(members.cStr())) {
            for (auto& m : *entries) others->add(kj::tuple(m.jobId, kj::mv(m.token)));
          }
          return peer(to)
              .then([jobId, token = kj::mv(token), others = kj::mv(others)](rpc::Node::Client node) mutable {
                auto req = node.commitHopRequest();
                req.setJobId(jobId);
                req.setToken(token);
                return req.send().then([node, others = kj::mv(others)](
                                           capnp::Response<rpc::Node::CommitHopResults>&& root) mutable {
                  kj::Vector<kj::Promise<void>> each;
                  for (auto& m : *others) {
                    auto one = node.commitHopRequest();
                    one.setJobId(kj::get<0>(m));
                    one.setToken(kj::get<1>(m));
                    each.add(one.send().ignoreResult());
                  }
                  return kj::joinPromises(each.releaseAsArray()).then(
                      [root = kj::mv(root)]() mutable { return kj::mv(root); });
                });
              })
              .exclusiveJoin(io_.provider->getTimer().afterDelay(config_.transferTimeoutMs * kj::MILLISECONDS)
                                 .then([]() -> capnp::Response<rpc::Node::CommitHopResults> {
                                   fail(kj::str("no answer within the transfer timeout"));
                                 }))
              .then([result](capnp::Response<rpc::Node::CommitHopResults>&& r) mutable {
                result.setRestoreMs(r.getRestoreMs());
                result.setMode("recovered");
              }, [this, result, why = kj::mv(why), jobId](kj::Exception&& e) mutable {
                log(kj::str("job ", jobId, ": commit from here failed too: ", e.getDescription()));
                result.setMode("unconfirmed");
                result.setProblem(kj::str(why, "; committing it from its sender's shadowd failed too: ",
                                          oneLine(e.getDescription())));
              });
        }
        if (!ok) {
          auto line = oneLine(lastLine(texts[1]));
          if (*timedOut) {
            line = kj::str("the hop took more than ", kSenderTimeoutMinutes, " minutes: cancelled");
          } else if (WIFSIGNALED(status)) {
            // Killed by someone else (or crashed): what it said last may not be why.
            line = kj::str("the sender (migctl send) was ", describeStatus(status));
          }
          if (line.size() == 0) line = kj::str("the sender ended with ", describeStatus(status));
          fail(kj::mv(line));
        }
        // Every image sent teaches the rate to its destination (balance's cost of a move).
        double sendMs = 0;
        auto sent = texts[0].startsWith("COMMITTED\n") ? texts[0].slice(10) : texts[0].asPtr();
        if (sscanf(sent.begin(), "MIGRATED %*f %*u %*f %*f %*s %*u %*u %*u %*u %lf", &sendMs) != 1) sendMs = transfer;
        learnTransferRate(*this, to, static_cast<double>(bytes), sendMs / 1000);
        result.setFreezeMs(freeze);
        result.setImageBytes(bytes);
        result.setTransferMs(transfer);
        result.setRestoreMs(restore);
        // Then (pre-copy, send_command.cc): "MODE BYTES_BEFORE BYTES_DURING ROUNDS", and
        // on the next line why not pre-copy, when it was not possible.
        char mode[32] = "stop-and-copy";
        unsigned long long before = 0, during = bytes, after = 0;
        unsigned rounds = 0;
        auto migrated = texts[0].startsWith("COMMITTED\n") ? texts[0].slice(10) : texts[0].asPtr();
        sscanf(migrated.begin(), "MIGRATED %*f %*u %*f %*f %31s %llu %llu %u %llu", mode, &before, &during, &rounds,
               &after);
        result.setBytesAfterFreeze(after);
        result.setMode(mode);
        result.setBytesBeforeFreeze(before);
        result.setBytesDuringFreeze(during);
        result.setRounds(rounds);
        if (const char* nl = strchr(migrated.begin(), '\n'); nl != nullptr && nl[1] != '\0') {
          result.setModeNote(oneLine(kj::StringPtr(nl + 1)));
        }
        return kj::READY_NOW;
      });
}

}  // namespace mig::shadow
