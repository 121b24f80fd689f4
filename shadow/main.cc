// shadowd: the per-host daemon. Receives migrating jobs and restores them, sends jobs
// that run here elsewhere, relays the calls of jobs that run here to their homes,
// and serves as home (through the deputies) for jobs that started here.
#include "shadow/child_process.h"
#include "shadow/local_socket.h"
#include "shadow/error.h"
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

constexpr const char* kUsage =
    "usage: shadowd [--listen HOST:PORT] [--cluster-key FILE] [options]\n"
    "\n"
    "The mig daemon of this host. Runs in the foreground; stops on SIGTERM or SIGINT.\n"
    "\n"
    "  --listen HOST:PORT   accept migrations and calls from other hosts here; any\n"
    "                       address but loopback needs --cluster-key\n"
    "  --advertise HOST:PORT  the address other hosts reach this one by (default: --listen)\n"
    "  --cluster-key FILE   the cluster's shared secret (chmod 600; at least 16 bytes)\n"
    "  --nodes FILE         known hosts, one 'NAME HOST:PORT' per line: `--to NAME` works\n"
    "  --socket PATH        the local control socket (default: $MIG_SHADOWD_SOCKET or\n"
    "                       /tmp/mig-UID/shadowd.sock)\n"
    "  --spool DIR          where incoming images are kept while their job runs here\n"
    "                       (default: next to the socket)\n"
    "  --local-path DIR     a directory every host has (shared file system): migrated jobs\n"
    "                       open files under it locally (repeatable; also $MIG_LOCAL_PATHS,\n"
    "                       colon-separated)\n"
    "  --transfer-timeout S a hop whose image makes no progress for S seconds (the\n"
    "                       destination stopped answering) is cancelled: the job runs on\n"
    "                       where it was, the destination deletes what it received\n"
    "                       (default: 30)\n"
    "  --login-timeout S    a peer that has not logged in after S seconds is disconnected\n"
    "                       (default: 10)\n"
    "  --max-pending-logins N  at most N connections waiting to log in at once; more are\n"
    "                       closed at once (default: 16). Before login a peer may send\n"
    "                       at most 64 KiB\n"
    "  --insecure-plaintext-links  FOR BENCHMARKS ONLY: links to other hosts carry\n"
    "                       everything in clear (jobs' data, images); both ends must say\n"
    "                       so. Default: encrypted and authenticated with the cluster key\n"
    "  --log FILE           log there instead of stderr\n"
    "  -h, --help           this text\n";

[[noreturn]] void usageError(const char* what) {
  fprintf(stderr, "shadowd: %s\n(see shadowd --help)\n", what);
  exit(2);
}

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

void readNodes(kj::StringPtr path, DaemonConfig& config) {
  FILE* f = fopen(path.cStr(), "re");
  if (f == nullptr) usageError(kj::str("cannot read the nodes file ", path, ": ", strerror(errno)).cStr());
  char line[512];
  int n = 0;
  while (fgets(line, sizeof(line), f)) {
    ++n;
    char name[256], addr[256];
    if (line[0] == '#' || sscanf(line, "%255s %255s", name, addr) != 2) continue;
    config.nodes.upsert(kj::str(name), kj::str(addr), [](kj::String& old, kj::String&& v) { old = kj::mv(v); });
  }
  fclose(f);
}

// "2.5" -> 2500; a bad or non-positive number is a usage error.
uint64_t parseSecondsMs(kj::StringPtr option, kj::StringPtr text) {
  char* end = nullptr;
  double s = strtod(text.cStr(), &end);
  if (end == text.cStr() || *end != '\0' || !(s > 0) || s > 86400 * 7) {
    usageError(kj::str(option, " takes a number of seconds > 0, not '", text, "'").cStr());
  }
  return static_cast<uint64_t>(s * 1000 + 0.5);
}

size_t parseCount(kj::StringPtr option, kj::StringPtr text) {
  char* end = nullptr;
  long n = strtol(text.cStr(), &end, 10);
  if (end == text.cStr() || *end != '\0' || n < 1 || n > 100000) {
    usageError(kj::str(option, " takes a number >= 1, not '", text, "'").cStr());
  }
  return static_cast<size_t>(n);
}

int run(int argc, char** argv) {
  DaemonConfig config;
  const char* logPath = nullptr;
  for (int i = 1; i < argc; ++i) {
    auto arg = kj::StringPtr(argv[i]);
    auto value = [&]() -> kj::StringPtr {
      if (i + 1 >= argc) usageError(kj::str(arg, " needs a value").cStr());
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--listen") config.listen = kj::str(value());
    else if (arg == "--advertise") config.advertise = kj::str(value());
    else if (arg == "--cluster-key") config.keyPath = kj::str(value());
    else if (arg == "--nodes") readNodes(value(), config);
    else if (arg == "--socket") config.socketPath = kj::str(value());
    else if (arg == "--spool") config.spoolDir = kj::str(value());
    else if (arg == "--local-path") config.localPaths.add(kj::str(value()));
    else if (arg == "--log") logPath = value().cStr();
    else if (arg == "--transfer-timeout") config.transferTimeoutMs = parseSecondsMs(arg, value());
    else if (arg == "--login-timeout") config.loginTimeoutMs = parseSecondsMs(arg, value());
    else if (arg == "--max-pending-logins") config.maxPendingLogins = parseCount(arg, value());
    else if (arg == "--insecure-plaintext-links") config.linkMode = LinkMode::PLAINTEXT;
    else usageError(kj::str("unknown argument '", arg, "'").cStr());
  }
  if (const char* env = getenv("MIG_LOCAL_PATHS")) {
    for (const char* p = env; *p != '\0';) {
      const char* end = strchr(p, ':');
      size_t n = end != nullptr ? static_cast<size_t>(end - p) : strlen(p);
      if (n > 0) config.localPaths.add(kj::heapString(p, n));
      p += n + (end != nullptr ? 1 : 0);
    }
  }
  if (logPath != nullptr) {
    int fd = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) usageError(kj::str("cannot open the log ", logPath, ": ", strerror(errno)).cStr());
    dup2(fd, 2);
    close(fd);
  }
  if (config.listen.size() > 0 && !isLoopback(config.listen) && config.keyPath.size() == 0) {
    usageError("refusing to listen on a non-loopback address without --cluster-key FILE");
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
    return makeLocal(d);
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
      [&d](kj::Function<void()> onLogin) -> capnp::Capability::Client { return makeGate(d, kj::mv(onLogin)); },
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
  d.log(kj::str("listening on ", cfg.listen.size() > 0 ? cfg.listen.asPtr() : "(no network)", ", local socket ",
                cfg.socketPath, d.key().present() ? ", cluster key loaded" : ", no cluster key"));
  if (cfg.linkMode == LinkMode::PLAINTEXT) {
    d.log("WARNING: --insecure-plaintext-links: links to other hosts are NOT encrypted or integrity-protected; "
          "anyone on the network can read and alter jobs' data. For benchmarks only");
  }

  auto stop = io.unixEventPort.onSignal(SIGTERM).exclusiveJoin(io.unixEventPort.onSignal(SIGINT));
  auto served = localServing.exclusiveJoin(kj::mv(relayServing)).exclusiveJoin(kj::mv(peerServing));
  int status = 0;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    stop.then([&d](siginfo_t si) { d.log(kj::str("stopping on signal ", si.si_signo)); })
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
