// `migctl migrate`, `migctl list`, `migctl nodes`: what a user asks of this host's
// shadowd, over its local socket (rsc/mig.capnp, Local).
#include "image/image_error.h"
#include "migctl/commands.h"
#include "shadow/error.h"
#include "shadow/local_socket.h"
#include "shadow/mig.capnp.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>

namespace mig::migctl {
namespace {

using image::fail;

constexpr uint64_t kMigrateTimeoutMs = 600000;
constexpr uint64_t kQueryTimeoutMs = 20000;

struct LocalLink {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> client;
  rpc::Local::Client local = nullptr;

  explicit LocalLink(kj::StringPtr socket) {
    // connect() on a Unix socket needs write permission on it and search permission on
    // its directories: a socket there that we may not use is not "no shadowd".
    if (access(socket.cStr(), W_OK) != 0 && errno == EACCES) {
      fail(kj::str("permission denied on ", socket, ": that shadowd serves another user; run migctl as the ",
                   "job's owner (or as root)"));
    }
    if (access(socket.cStr(), F_OK) != 0) {
      fail(kj::str("no shadowd on this host (no socket at ", socket, "); start one: shadowd --listen HOST:PORT"));
    }
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      stream = io.provider->getNetwork().parseAddress(kj::str("unix:", socket)).wait(io.waitScope)->connect().wait(io.waitScope);
    })) {
      fail(kj::str("cannot reach shadowd at ", socket, " (is it running?): ", e->getDescription()));
    }
    client = kj::heap<capnp::TwoPartyClient>(*stream);
    local = client->bootstrap().castAs<rpc::Local>();
  }

  template <typename T>
  T wait(kj::Promise<T> p, uint64_t timeoutMs, kj::StringPtr what) {
    auto timeout = io.provider->getTimer().afterDelay(timeoutMs * kj::MILLISECONDS).then([what = kj::str(what)]() -> T {
      fail(kj::str(what, " timed out"));
    });
    return p.exclusiveJoin(kj::mv(timeout)).wait(io.waitScope);
  }
};

const char* socketArg(int& argc, char**& argv, kj::String& storage) {
  storage = shadow::defaultLocalSocket();
  for (int i = 0; i + 1 < argc; ++i) {
    if (strcmp(argv[i], "--socket") == 0) {
      storage = kj::str(argv[i + 1]);
      for (int j = i; j + 2 < argc; ++j) argv[j] = argv[j + 2];
      argc -= 2;
      break;
    }
  }
  return storage.cStr();
}

// The arguments of a query command (only --socket, --help): -1 to go on with
// `socket` set, else the exit status.
int queryArgs(const char* name, const char* usage, int argc, char** argv, kj::String& socket) {
  socketArg(argc, argv, socket);
  if (argc == 0) return -1;
  if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
    fputs(usage, stdout);
    return 0;
  }
  fprintf(stderr, "migctl %s: unexpected argument '%s'\n%s", name, argv[0], usage);
  return 2;
}

kj::String human(double seconds) {
  if (seconds < 120) return kj::str(static_cast<int>(seconds), "s");
  if (seconds < 7200) return kj::str(static_cast<int>(seconds / 60), "m");
  return kj::str(static_cast<int>(seconds / 3600), "h");
}

}  // namespace

int migrateCommand(int argc, char** argv) {
  constexpr const char* usage =
      "usage: migctl migrate PID --to NODE|HOST:PORT [--local-net | --rebind] [--socket PATH]\n"
      "\n"
      "Moves the job PID (as its home host knows it) to another host, live: it goes on\n"
      "there from where it was, its PID, files, terminal and parent stay at home. Run it\n"
      "on the job's home host, also to move a job that already migrated elsewhere.\n"
      "\n"
      "Its sockets stay at home: connections, listening sockets and bound addresses go\n"
      "on working, and the internet sockets it creates after the move are made at home\n"
      "too, so it keeps its network identity.\n"
      "  --local-net   the internet sockets it creates on the new host are that host's\n"
      "                (its own address, no detour home): for jobs that want the new\n"
      "                host's network. Sockets it already had stay at home.\n"
      "  --rebind      for a service behind a load balancer or a virtual IP: its\n"
      "                listening TCP sockets are made again on the new host, at the\n"
      "                same port on every address; its TCP connections are reset, so\n"
      "                their peers reconnect (to the new host); new sockets are the\n"
      "                new host's. Its TCP service no longer passes through home\n"
      "                (UDP sockets, pipes, its terminal and files still do).\n"
      "Default (keep the network at home) when clients know the job by its home\n"
      "address or connections must not break; --rebind when clients find it again by\n"
      "themselves and the detour home would cost too much.\n"
      "\n"
      "Its memory is copied while it runs (pre-copy: rounds, each sending what it wrote\n"
      "since the one before), then it is frozen only for what it wrote meanwhile and\n"
      "the rest of its state; where its writes cannot be tracked (a kernel before 6.7\n"
      "or without userfaultfd), it is frozen for the whole copy (stop-and-copy), and\n"
      "the result line says so.\n"
      "  --precopy        pre-copy, or fail if it is not available\n"
      "  --stop-and-copy  freeze first, then copy everything\n"
      "\n";
  kj::String storage;
  const char* socket = socketArg(argc, argv, storage);
  const char* to = nullptr;
  long pid = 0;
  auto network = rpc::NetworkPolicy::HOME;
  auto mode = rpc::MigrationMode::BEST;
  for (int i = 0; i < argc; ++i) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(usage, stdout);
      return 0;
    } else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) to = argv[++i];
    else if (strcmp(argv[i], "--precopy") == 0 || strcmp(argv[i], "--stop-and-copy") == 0) {
      const auto chosen = argv[i][2] == 'p' ? rpc::MigrationMode::PRECOPY : rpc::MigrationMode::STOP_AND_COPY;
      if (mode != rpc::MigrationMode::BEST && mode != chosen) {
        fprintf(stderr, "migctl migrate: --precopy and --stop-and-copy exclude each other: choose one\n%s", usage);
        return 2;
      }
      mode = chosen;
    }
    else if (strcmp(argv[i], "--local-net") == 0 || strcmp(argv[i], "--rebind") == 0) {
      const auto chosen = argv[i][2] == 'l' ? rpc::NetworkPolicy::LOCAL : rpc::NetworkPolicy::REBIND;
      if (network != rpc::NetworkPolicy::HOME && network != chosen) {
        fprintf(stderr, "migctl migrate: --local-net and --rebind exclude each other: choose one\n%s", usage);
        return 2;
      }
      network = chosen;
    }
    else if (argv[i][0] != '-' && pid == 0) {
      if (!parsePid(argv[i], pid)) {
        fprintf(stderr, "migctl migrate: '%s' is not a process ID\n", argv[i]);
        return 2;
      }
    } else {
      fprintf(stderr, "migctl migrate: unexpected argument '%s'\n%s", argv[i], usage);
      return 2;
    }
  }
  if (pid <= 0 || to == nullptr) {
    fprintf(stderr, "migctl migrate: %s\n%s", pid <= 0 ? "no PID given" : "no destination given (--to)", usage);
    return 2;
  }
  LocalLink link(socket);
  printf("migrating %ld to %s ...\n", pid, to);
  fflush(stdout);
  auto req = link.local.migrateRequest();
  req.setPid(static_cast<int32_t>(pid));
  req.setTo(to);
  req.setNetwork(network);
  req.setMode(mode);
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    auto r = link.wait(req.send(), kMigrateTimeoutMs, "the migration");
    auto m = r.getResult();
    // The figures in brackets are read by scripts (bench/migration_bench.sh): the mode
    // and the bytes sent before and while frozen come after them.
    constexpr double kMiB = 1 << 20;
    printf("migrated %ld to %s: frozen %.1f ms (image %.1f MiB, captured and sent in %.1f ms, restored in %.1f ms); ",
           pid, m.getDestination().cStr(), m.getFreezeMs(), static_cast<double>(m.getImageBytes()) / kMiB,
           m.getTransferMs(), m.getRestoreMs());
    if (m.getMode() == "pre-copy") {
      printf("pre-copy, %u rounds: %.1f MiB sent while it ran, %.1f MiB while frozen\n", m.getRounds(),
             static_cast<double>(m.getBytesBeforeFreeze()) / kMiB, static_cast<double>(m.getBytesDuringFreeze()) / kMiB);
    } else {
      printf("stop-and-copy%s%s%s: %.1f MiB sent while frozen\n", m.getModeNote().size() > 0 ? " (" : "",
             m.getModeNote().cStr(), m.getModeNote().size() > 0 ? ")" : "",
             static_cast<double>(m.getBytesDuringFreeze()) / kMiB);
    }
  })) {
    fprintf(stderr, "migctl migrate: %ld stays where it was: moving it to %s failed: %s\n", pid, to,
            shadow::oneLine(e->getDescription()).cStr());
    return 1;
  }
  return 0;
}

int listCommand(int argc, char** argv) {
  constexpr const char* usage =
      "usage: migctl list [--socket PATH]\n"
      "\n"
      "Jobs on this host: those started here (also where they run now) and those that\n"
      "migrated here.\n";
  kj::String socket;
  if (int status = queryArgs("list", usage, argc, argv, socket); status >= 0) return status;
  LocalLink link(socket);
  auto r = link.wait(link.local.listRequest().send(), kQueryTimeoutMs, "asking shadowd for its jobs");
  printf("%-8s %-22s %-22s %-22s %9s %6s  %s\n", "PID", "HOME", "WHERE", "STATE", "RSS", "AGE", "COMMAND");
  for (auto j : r.getJobs()) {
    printf("%-8d %-22s %-22s %-22s %8lluK %6s  %s\n", j.getVpid(), j.getHome().cStr(), j.getLocation().cStr(),
           j.getState().cStr(), static_cast<unsigned long long>(j.getRssKiB()), human(j.getAgeSeconds()).cStr(),
           j.getCommand().cStr());
  }
  return 0;
}

int nodesCommand(int argc, char** argv) {
  constexpr const char* usage =
      "usage: migctl nodes [--socket PATH]\n"
      "\n"
      "The hosts this host's shadowd knows (its --nodes file), whether they answer, and\n"
      "their load.\n";
  kj::String socket;
  if (int status = queryArgs("nodes", usage, argc, argv, socket); status >= 0) return status;
  LocalLink link(socket);
  auto r = link.wait(link.local.nodesRequest().send(), kQueryTimeoutMs, "asking shadowd for its nodes");
  printf("%-12s %-22s %-12s %6s %5s %10s  %s\n", "NAME", "ADDRESS", "STATE", "LOAD", "JOBS", "MEM FREE", "HOSTNAME");
  for (auto n : r.getNodes()) {
    if (n.getReachable()) {
      auto i = n.getInfo();
      printf("%-12s %-22s %-12s %6.2f %5u %9lluM  %s\n", n.getName().cStr(), n.getAddress().cStr(), "up",
             i.getLoad1(), i.getJobs(), static_cast<unsigned long long>(i.getMemAvailableKiB() / 1024),
             i.getHostname().cStr());
    } else {
      printf("%-12s %-22s %-12s  (%s)\n", n.getName().cStr(), n.getAddress().cStr(), "unreachable", n.getError().cStr());
    }
  }
  return 0;
}

}  // namespace mig::migctl
