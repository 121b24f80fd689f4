// shadowd: the per-host daemon. Receives migrating jobs and restores them, sends jobs
// that run here elsewhere, relays the calls of jobs that run here to their homes,
// and serves as home (through the deputies) for jobs that started here.
#include "migctl/cli.h"
#include "shadow/balance.h"
#include "shadow/child_process.h"
#include "shadow/drain.h"
#include "shadow/local_socket.h"
#include "shadow/maintenance.h"
#include "shadow/metrics.h"
#include "shadow/error.h"
#include "shadow/hop_fault.h"
#include "shadow/services.h"
#include "shadow/rpc_server.h"
#include "shadow/spool.h"

#include <kj/debug.h>
#include <kj/main.h>

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <libgen.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

constexpr const char* kAbout =
    "The mig daemon of this host. Runs in the foreground; stops on SIGTERM or SIGINT, once no job that moved "
    "here or away from here makes its calls through it (until then it takes no new work).";

kj::String exeDir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return kj::str(".");
  buf[n] = '\0';
  return kj::str(dirname(buf));
}

// The helper programs, from the environment, beside shadowd (install) or in the build tree.
kj::String findProgram(const char* env, kj::StringPtr dir, std::initializer_list<const char*> candidates) {
  if (const char* e = getenv(env); e != nullptr && *e) return kj::str(e);
  for (const char* c : candidates) {
    auto path = kj::str(dir, "/", c);
    if (access(path.cStr(), X_OK) == 0) return path;
  }
  return kj::str(dir, "/", *candidates.begin());
}

bool isLoopback(kj::StringPtr hostPort) {
  return hostPort.startsWith("127.") || hostPort.startsWith("localhost:") || hostPort.startsWith("[::1]");
}

kj::Maybe<kj::String> readNodes(kj::StringPtr path, DaemonConfig& config) {
  FILE* f = fopen(path.cStr(), "re");
  if (f == nullptr) return kj::str("cannot read the nodes file ", path, ": ", strerror(errno));
  char line[512];
  while (fgets(line, sizeof(line), f)) {
    char name[256], addr[256];
    if (line[0] == '#' || sscanf(line, "%255s %255s", name, addr) != 2) continue;
    config.nodes.upsert(kj::str(name), kj::str(addr), [](kj::String& old, kj::String&& v) { old = kj::mv(v); });
  }
  fclose(f);
  return nullptr;
}

// Every option of shadowd, declared in one place; what they set.
struct Options {
  DaemonConfig config;
  kj::Maybe<kj::String> logPath;
};

kj::MainFunc optionsMain(cli::Context& cli, Options& o, bool& parsed) {
  using V = kj::MainBuilder::Validity;
  auto str = [](kj::String& field) {
    return [&field](kj::StringPtr v) -> V {
      field = kj::str(v);
      return true;
    };
  };
  auto seconds = [](uint64_t& fieldMs) {
    return [&fieldMs](kj::StringPtr v) -> V {
      KJ_IF_MAYBE(why, cli::parseSecondsMs(v, 86400 * 7, fieldMs)) { return kj::mv(*why); }
      return true;
    };
  };
  DaemonConfig& c = o.config;
  return kj::MainBuilder(cli, cli::kVersion, kAbout)
      .addOptionWithArg({"listen"}, str(c.listen), "HOST:PORT",
                        "accept migrations and calls from other hosts here; any address but loopback "
                        "needs --cluster-key")
      .addOptionWithArg({"advertise"}, str(c.advertise), "HOST:PORT",
                        "the address other hosts reach this one by (default: --listen)")
      .addOptionWithArg({"cluster-key"}, str(c.keyPath), "FILE",
                        "the cluster's shared secret (chmod 600; at least 16 bytes)")
      .addOptionWithArg({"nodes"}, [&c](kj::StringPtr v) -> V {
        KJ_IF_MAYBE(why, readNodes(v, c)) { return kj::mv(*why); }
        return true;
      }, "FILE", "known hosts, one 'NAME HOST:PORT' per line: `--to NAME` works")
      .addOptionWithArg({"socket"}, str(c.socketPath), "PATH",
                        "the local control socket (default: $MIG_SHADOWD_SOCKET or /tmp/mig-UID/shadowd.sock)")
      .addOptionWithArg({"spool"}, str(c.spoolDir), "DIR",
                        "where incoming images are kept while their job runs here (default: next to the socket)")
      .addOptionWithArg({"local-path"}, [&c](kj::StringPtr v) -> V {
        c.localPaths.add(kj::str(v));
        return true;
      }, "DIR", "a directory every host has (shared file system): migrated jobs open files under it "
                "locally (repeatable; also $MIG_LOCAL_PATHS, colon-separated)")
      .addOptionWithArg({"transfer-timeout"}, seconds(c.transferTimeoutMs), "S",
                        "a hop whose image makes no progress for S seconds (the destination stopped "
                        "answering) is cancelled: the job runs on where it was, the destination deletes "
                        "what it received (default: 30)")
      .addOptionWithArg({"link-lost-after"}, seconds(c.linkLostAfterMs), "S",
                        "a migrated job whose link home stays broken for S seconds is lost: listed 'lost', "
                        "its deputy exits with status 87 and it is killed where it ran; a link back "
                        "sooner resumes, every call run once (default: 90)")
      .addOptionWithArg({"login-timeout"}, seconds(c.loginTimeoutMs), "S",
                        "a peer that has not logged in after S seconds is disconnected (default: 10)")
      .addOptionWithArg({"max-pending-logins"}, [&c](kj::StringPtr v) -> V {
        long n = 0;
        KJ_IF_MAYBE(why, cli::parseCount(v, 1, 100000, n)) { return kj::mv(*why); }
        c.maxPendingLogins = static_cast<size_t>(n);
        return true;
      }, "N", "at most N connections waiting to log in at once; more are closed at once (default: 16). "
              "Before login a peer may send at most 64 KiB")
      .addOption({"insecure-plaintext-links"}, [&c]() -> V {
        c.linkMode = LinkMode::PLAINTEXT;
        return true;
      }, "FOR BENCHMARKS ONLY: links to other hosts carry everything in clear (jobs' data, images); "
         "both ends must say so. Default: encrypted and authenticated with the cluster key")
      .addOption({"no-direct-link"}, [&c]() -> V {
        c.directLink = false;
        return true;
      }, "the calls home of jobs that migrated in go through both shadowds, as before the direct link "
         "(for benchmarks and diagnosis). Default: each job gets a link of its own to its deputy")
      .addOptionWithArg({"policy"}, [&c](kj::StringPtr v) -> V {
        KJ_IF_MAYBE(why, loadPolicy(v, c.policy)) { return kj::mv(*why); }
        return true;
      }, "FILE", "the policies (TOML: [owner_returns], [drain], [balance], [node_aliases]; docs/policies.md); a "
                 "key it does not know, a wrong type or a bad number is refused with its line")
      .addOptionWithArg({"metrics-port"}, [&c](kj::StringPtr v) -> V {
        long n = 0;
        KJ_IF_MAYBE(why, cli::parseCount(v, 1, 65535, n)) { return kj::mv(*why); }
        c.metricsPort = static_cast<uint16_t>(n);
        return true;
      }, "PORT", "serve Prometheus metrics at http://127.0.0.1:PORT/metrics (loopback only; "
                 "default: none; docs/metrics.md)")
      .addOptionWithArg({"stop-time-limit"}, seconds(c.stopTimeLimitMs), "S",
                        "on SIGTERM the jobs that migrated in leave first (home or to another host); "
                        "no move is started after S seconds, then shadowd exits and logs the ones "
                        "left (default: 60; a second SIGTERM exits at once)")
      .addOptionWithArg({"log"}, [&o](kj::StringPtr v) -> V {
        o.logPath = kj::str(v);
        return true;
      }, "FILE", "log there instead of stderr")
      .callAfterParsing([&o, &parsed]() -> V {
        auto& c = o.config;
        if (c.listen.size() > 0 && !isLoopback(c.listen) && c.keyPath.size() == 0) {
          return "refusing to listen on a non-loopback address without --cluster-key FILE";
        }
        // [node_aliases] name nodes of the nodes file, which may come after --policy.
        KJ_IF_MAYBE(why, checkAliases(c.policy, c.nodes)) { return kj::str("--policy: ", *why); }
        parsed = true;
        return true;
      })
      .build();
}

// The jobs whose calls go through this shadowd: those that run here having moved in,
// and those whose home is here that run elsewhere (their deputy's link is ours).
size_t dependentJobs(Daemon& d) {
  size_t n = d.hostedJobs().size();
  for (auto& e : d.homeJobs()) {
    if ((e.value->location.size() > 0 || e.value->migrating) && !e.value->lost) ++n;
  }
  return n;
}

// SIGTERM (systemctl stop) must not end the jobs that moved here or away from here,
// as SIGKILL would: with such jobs, shadowd takes no new work and stays until the
// last of them has ended or left. (With the direct link between a job and its deputy,
// issue 13, they will not need it; until then a restart waits for them.)
kj::Promise<void> stopWhenFree(Daemon& d) {
  size_t n = dependentJobs(d);
  if (n == 0) return kj::READY_NOW;
  if (!d.admission().stopping) {
    d.admission().stopping = true;
    d.log(kj::str("not stopping yet: ", n, " job(s) that moved here or away from here make their calls through this "
                  "shadowd; taking no new work, stopping once they have ended or left (SIGKILL ends them now)"));
  }
  return d.io().provider->getTimer().afterDelay(1 * kj::SECONDS).then([&d]() { return stopWhenFree(d); });
}

int run(int argc, char** argv) {
  cli::Context cli("shadowd");
  Options o;
  bool parsed = false;
  cli::acceptDashH(optionsMain(cli, o, parsed))("shadowd", cli::params(argc, argv));
  if (!parsed) return 2;  // (a usage error has exited already)
  DaemonConfig config = kj::mv(o.config);
  if (const char* env = getenv("MIG_LOCAL_PATHS")) {
    for (const char* p = env; *p != '\0';) {
      const char* end = strchr(p, ':');
      size_t n = end != nullptr ? static_cast<size_t>(end - p) : strlen(p);
      if (n > 0) config.localPaths.add(kj::heapString(p, n));
      p += n + (end != nullptr ? 1 : 0);
    }
  }
  KJ_IF_MAYBE(logPath, o.logPath) {
    int fd = open(logPath->cStr(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) cli.usageError("shadowd", kj::str("cannot open the log ", *logPath, ": ", strerror(errno)));
    dup2(fd, 2);
    close(fd);
  }
  ClusterKey key = ClusterKey::none();
  if (config.keyPath.size() > 0) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { key = ClusterKey::load(config.keyPath); })) {
      fprintf(stderr, "shadowd: %s\n", e->getDescription().cStr());
      return 1;
    }
    char real[PATH_MAX];
    if (realpath(config.keyPath.cStr(), real) != nullptr) config.keyPath = kj::str(real);
  }
  if (config.socketPath.size() == 0) config.socketPath = defaultLocalSocket();
  auto sockDir = kj::str(config.socketPath);
  KJ_IF_MAYBE(slash, sockDir.findLast('/')) { sockDir = kj::str(sockDir.slice(0, *slash)); }
  else sockDir = kj::str(".");
  mkdir(sockDir.cStr(), 0700);
  config.relayPath = kj::str(sockDir, "/relay.sock");
  if (config.spoolDir.size() == 0) config.spoolDir = kj::str(sockDir, "/spool");
  mkdir(config.spoolDir.cStr(), 0700);
  if (config.advertise.size() == 0) config.advertise = kj::str(config.listen);
  auto dir = exeDir();
  config.migctl = findProgram("MIG_MIGCTL", dir, {"migctl", "../migctl/migctl"});
  config.deputy = findProgram("MIG_DEPUTY", dir, {"mig-deputy", "../deputy/mig-deputy"});
  config.migLink = findProgram("MIG_LINK", dir, {"mig-link", "../libexec/mig/mig-link"});

  // A test's fault injection (shadow/hop_fault.h): a bad value is refused here, not
  // found wrong in the middle of a hop.
  kj::String faultWhy;
  auto fault = parseHopFault(getenv("MIG_FAULT"), faultWhy);
  if (faultWhy.size() > 0) {
    fprintf(stderr, "shadowd: %s\n", faultWhy.cStr());
    return 2;
  }

  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  kj::UnixEventPort::captureChildExit();
  signal(SIGPIPE, SIG_IGN);
  auto io = kj::setupAsyncIo();
  Daemon d(io, kj::mv(config), kj::mv(key));
  auto& cfg = d.config();
  // Images a crashed shadowd left (a transfer cut short, a job that is gone).
  auto leftovers = cleanSpool(cfg.spoolDir);
  if (leftovers.size() > 0) {
    d.log(kj::str("deleted ", leftovers.size(), " file(s) an earlier shadowd left in ", cfg.spoolDir, ": ",
                  kj::strArray(leftovers, " ")));
  }
  loadLostJobs(d);
  auto& network = io.provider->getNetwork();

  // The local socket: owner-only, and every peer's uid checked.
  unlink(cfg.socketPath.cStr());
  auto localListener = network.parseAddress(kj::str("unix:", cfg.socketPath)).wait(io.waitScope)->listen();
  chmod(cfg.socketPath.cStr(), 0600);
  AcceptFn acceptLocal = [&d](kj::AsyncIoStream& stream) -> capnp::Capability::Client {
    struct ucred cred {};
    uint len = sizeof(cred);
    stream.getsockopt(SOL_SOCKET, SO_PEERCRED, &cred, &len);
    require(cred.uid == getuid() || cred.uid == 0, "local connection from another user refused");
    return makeLocal(d, cred.pid, cred.uid);
  };
  auto localServing = serveRpc(*localListener, d.tasks(), acceptLocal);

  unlink(cfg.relayPath.cStr());
  auto relayListener = network.parseAddress(kj::str("unix:", cfg.relayPath)).wait(io.waitScope)->listen();
  chmod(cfg.relayPath.cStr(), 0666);  // jobs of any user; each must show its job token
  auto relayServing = serveCallRelay(d, *relayListener);

  kj::Own<kj::ConnectionReceiver> peerListener;
  kj::Promise<void> peerServing = kj::NEVER_DONE;
  PreLoginLimits limits;
  limits.timeoutMs = cfg.loginTimeoutMs;
  limits.maxPending = cfg.maxPendingLogins;
  GatedServer gated(
      io.provider->getTimer(), limits, linkSecret(d.key(), cfg.linkMode),
      [&d](kj::Function<void()> onLogin, kj::Function<void()> watchLiveness) -> capnp::Capability::Client {
        return makeGate(d, kj::mv(onLogin), kj::mv(watchLiveness));
      },
      [&d](kj::StringPtr line) { d.log(line); });
  if (cfg.listen.size() > 0) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      peerListener = network.parseAddress(cfg.listen).wait(io.waitScope)->listen();
    })) {
      fprintf(stderr, "shadowd: cannot listen on %s: %s\n", cfg.listen.cStr(), e->getDescription().cStr());
      unlink(cfg.socketPath.cStr());
      unlink(cfg.relayPath.cStr());
      return 1;
    }
    peerServing = gated.serve(*peerListener);
  }
  kj::Promise<void> metricsServing = kj::NEVER_DONE;
  if (cfg.metricsPort != 0) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      auto listener = network.parseAddress("127.0.0.1", cfg.metricsPort).wait(io.waitScope)->listen();
      metricsServing = serveMetrics(d, kj::mv(listener));
    })) {
      fprintf(stderr, "shadowd: cannot serve metrics on 127.0.0.1:%u: %s\n", cfg.metricsPort,
              e->getDescription().cStr());
      unlink(cfg.socketPath.cStr());
      unlink(cfg.relayPath.cStr());
      return 1;
    }
    d.log(kj::str("metrics: http://127.0.0.1:", cfg.metricsPort, "/metrics"));
  }
  d.log(kj::str("listening on ", cfg.listen.size() > 0 ? cfg.listen.asPtr() : "(no network)", ", local socket ",
                cfg.socketPath, d.key().present() ? ", cluster key loaded" : ", no cluster key"));
  if (fault.action != HopFaultAction::NONE) {
    d.log(kj::str("MIG_FAULT: every hop will ", fault.action == HopFaultAction::CRASH ? "crash" : "fail", " at step ",
                  fault.step, " (fault injection, for tests)"));
  }
  if (cfg.linkMode == LinkMode::PLAINTEXT) {
    d.log("WARNING: --insecure-plaintext-links: links to other hosts are NOT encrypted or integrity-protected; "
          "anyone on the network can read and alter jobs' data. For benchmarks only");
  }

  auto& own = cfg.policy.ownerReturns;
  if (own.enabled) {
    d.log(kj::str("policy: owner returns: jobs leave when this host's own processes use ", own.threshold,
                  " CPUs or more for ", own.sustainSeconds, " s (sampled every ", own.sampleSeconds, " s)"));
  }
  d.tasks().add(watchOwner(d));
  auto& bal = cfg.policy.balance;
  if (bal.enabled) {
    d.log(kj::str("policy: balance: a job leaves this host when busy (", d.cpus(), " CPUs) for one where the gain beats "
                  "the cost; no return within ", bal.noReturnSeconds, " s"));
  }
  d.tasks().add(watchBalance(d));

  auto stop = io.unixEventPort.onSignal(SIGTERM).exclusiveJoin(io.unixEventPort.onSignal(SIGINT));
  auto served = localServing.exclusiveJoin(kj::mv(relayServing))
                    .exclusiveJoin(kj::mv(peerServing))
                    .exclusiveJoin(kj::mv(metricsServing));
  int status = 0;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    stop.then([&d, &io](siginfo_t si) {
          d.log(kj::str("stopping on signal ", si.si_signo));
          // Maintenance (shadow/maintenance.h): the guests leave first; then shadowd
          // stays for the jobs that still need it (stopWhenFree), unless signalled again.
          auto again = io.unixEventPort.onSignal(SIGTERM).exclusiveJoin(io.unixEventPort.onSignal(SIGINT));
          return sendGuestsAway(d)
              .then([&d]() { return stopWhenFree(d); })
              .exclusiveJoin(again.then([&d](siginfo_t) {
                d.log("stopping at once on a second signal: the jobs that still needed this shadowd lose it");
              }));
        })
        .exclusiveJoin(kj::mv(served))
        .wait(io.waitScope);
  })) {
    d.log(kj::str("stopping: ", e->getDescription()));
    status = 1;
  }
  unlink(cfg.socketPath.cStr());
  unlink(cfg.relayPath.cStr());
  return status;
}

}  // namespace
}  // namespace mig::shadow

int main(int argc, char** argv) { return mig::shadow::run(argc, argv); }
