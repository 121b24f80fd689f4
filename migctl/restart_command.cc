// `migctl restart FILE [--force]`: becomes the process saved in FILE. Everything
// that needs a real C++ environment happens here (checks, restore plan, fds, cwd,
// limits); then migctl execs the freestanding restorer, which rebuilds memory and
// threads and jumps back into the saved contexts. The restored process therefore
// has migctl's PID, parent, terminal and job slot.
#include "image/file_reader.h"
#include "image/host_facts.h"
#include "image/image_error.h"
#include "image/plan_builder.h"
#include "migctl/clock_continuity.h"
#include "image/image_chain.h"
#include "migctl/commands.h"
#include "migctl/tree_restart.h"
#include "resources/shared_memory.h"
#include "resources/sysv_ipc.h"
#include "resources/fd_restore.h"
#include "resources/lazy_pages.h"
#include "resources/network_page_source.h"
#include "resources/memory.h"
#include "resources/process_attrs.h"
#include "shadow/hex.h"
#include "shadow/hop_fault.h"
#include "shadow/hop_times.h"
#include "shadow/network_policy.h"
#include "shim/forward/forward_config.h"

#include <kj/debug.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <csignal>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <string>
#include <grp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <vector>
#include <unistd.h>

namespace mig::migctl {
namespace {

using image::fail;

constexpr const char* kAbout =
    "Continues the process saved in checkpoint image FILE, in this terminal: migctl "
    "becomes that process (same PID as far as it can tell, its files reopened at their "
    "offsets, its stdin/stdout/stderr connected to this command's own). The same image "
    "can be restarted any number of times. An image of a process tree (migctl checkpoint "
    "of a process with children) is restarted whole: migctl forks its processes with the "
    "PIDs they had (this needs root, and those PIDs free), in their sessions and process "
    "groups, and waits for the tree's root, exiting with its status.";
constexpr const char* kMore =
    "shadowd restarts migrating jobs with --migrated --relay SOCKET --job-id ID and "
    "MIG_JOB_TOKEN=HEX in the environment: their fds stay at home and their calls go "
    "there. Without the privilege for a time namespace, the shim offsets the job's "
    "monotonic clock readings instead, so they go on from the checkpoint's.";

struct Options {
  kj::String path;
  resources::FileRestoreOptions files;
  MigratedOptions migrated;
  bool dataVerified = false;  // shadowd checked the data checksums as the image arrived
  bool asFileOwner = false;   // an image without a recorded owner runs as its file's owner
  bool lazy = false;          // pages come in as the job touches them (--lazy, or chosen)
  bool eager = false;         // --eager: every page checked and placed before the job runs
  bool checkOnly = false;     // --check-only: every check, then exit 0 (a hop back home's phase one)
  kj::Maybe<kj::String> homecomingLog;  // --homecoming-log: where the restart's lines go (not the job's stderr)
};

// A big image restarts lazily unless asked otherwise (issue 14: the job runs before its
// memory is read; a full read and check of 1 GiB first took 300-500 ms here). Below
// this size the page server costs more than the read it saves. Not for a hop (shadowd
// chooses: pre-copy hops are lazy already, a post-copy's pages are remote), a tree, or
// where the kernel's accesses to missing pages could not wait (lazyPagesUnavailable).
constexpr uint64_t kLazyByDefaultBytes = 64ull << 20;

bool lazyByDefault(image::FileReader& img, const MigratedOptions& migrated) {
  if (migrated.migrated || migrated.homecoming || img.isTree()) return false;
  uint64_t pageBytes = 0;
  for (size_t i = 0; i < img.sectionCount(); ++i) {
    if (img.section(i).type == static_cast<uint16_t>(image::SectionType::pages)) pageBytes += img.section(i).dataLen;
  }
  return pageBytes >= kLazyByDefaultBytes && resources::lazyPagesUnavailable() == nullptr;
}

int64_t monotonicNowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// The shim's forwarding configuration: what is known before the files are restored
// (which also connect their readiness stand-ins to the relay with it).
void fillForwardConfig(forward::Config& config, const MigratedOptions& m) {
  config.magic = forward::kConfigMagic;
  config.size = sizeof(config);
  kj::StringPtr relay = KJ_ASSERT_NONNULL(m.relay);
  if (relay.size() >= sizeof(config.relaySocket)) fail(kj::str("relay socket path too long: ", relay));
  strcpy(config.relaySocket, relay.cStr());
  config.jobId = m.jobId;
  config.realtimeOffsetNs = m.realtimeOffsetNs;
  config.network = m.network;
  if (m.token.size() != sizeof(config.token)) fail(kj::str("a job token must be ", sizeof(config.token), " bytes"));
  memcpy(config.token, m.token.begin(), sizeof(config.token));
  for (const auto& p : m.localPaths) {
    if (config.localPathCount == forward::kMaxLocalPaths) fail(kj::str("too many --local-path"));
    if (p.size() >= forward::kPathMax) fail(kj::str("--local-path too long: ", p));
    strcpy(config.localPaths[config.localPathCount++], p.cStr());
  }
}

// The whole configuration, in a memfd the restorer leaves open for the shim.
int writeForwardConfig(const forward::Config& config) {
  int fd = memfd_create("mig-forward", 0);  // inherited by the restorer, which hands it on
  if (fd < 0 || write(fd, &config, sizeof(config)) != static_cast<ssize_t>(sizeof(config))) {
    fail(kj::str("cannot write the forwarding configuration: ", strerror(errno)));
  }
  return fd;
}

std::string findRestorer() {
  if (const char* env = getenv("MIG_RESTORE")) return env;
  KJ_IF_MAYBE(p, cli::findBesideSelf({"/mig-restore", "/../restore/mig-restore", "/../libexec/mig/mig-restore"},
                                     X_OK)) {
    return kj::mv(*p);
  }
  fail(kj::str("cannot find mig-restore next to migctl; set MIG_RESTORE to its path"));
}

int restart(Options& o, const resources::CallerFds& caller);

// The restart's part of the freeze ($MIG_HOP_TIMES, shadow/hop_times.h): written just
// before the restorer is exec'd (or not at all, when the restart fails).
shadow::HopTimes& restartTimes() {
  static shadow::HopTimes times("restart");
  return times;
}

[[noreturn]] void comeBackOrDie(MigratedOptions& m);

// A Unix stream socket connected to `name` ("@NAME": abstract, shadow/home_gate.h),
// close-on-exec; -1 with errno.
int connectHomeGate(kj::StringPtr name) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (name.size() < 2 || name[0] != '@' || name.size() > sizeof(addr.sun_path)) {
    errno = EINVAL;
    return -1;
  }
  memcpy(addr.sun_path + 1, name.begin() + 1, name.size() - 1);  // sun_path[0] = 0
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

// Holds every fd this process inherited (the deputy's) one after the other from a base
// above every fd open now and every fd number of the image's process, and says so in
// `config`; returns base.
int holdDeputyFds(image::FileReader& img, const resources::CallerFds& caller, forward::Config& config) {
  int base = 0;
  for (size_t i = 0; i < img.sectionCount(); ++i) {
    if (img.section(i).type != static_cast<uint16_t>(image::SectionType::files)) continue;
    for (auto f : img.meta<image::schema::Files>(i).getFds()) base = std::max(base, f.getFd() + 1);
  }
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) fail(kj::str("cannot list this process's fds: ", strerror(errno)));
  while (dirent* e = readdir(d)) base = std::max(base, atoi(e->d_name) + 1);
  closedir(d);
  for (const auto& f : caller.all()) {
    if (!caller.inherited(f.fd) || config.heldCount == forward::kMaxFds) continue;
    const int at = base + static_cast<int>(config.heldCount);
    if (dup3(f.fd, at, 0) < 0) fail(kj::str("cannot hold the deputy's fd ", f.fd, ": ", strerror(errno)));
    config.heldFds[config.heldCount++] = f.fd;
  }
  config.homeFdBase = base;
  return base;
}

}  // namespace

kj::MainFunc restartMain(cli::Context& cli, const resources::CallerFds& caller) {
  auto opts = kj::heap<Options>();
  Options& o = *opts;
  using V = kj::MainBuilder::Validity;
  auto main = kj::MainBuilder(cli, cli::kVersion, kAbout, kMore)
      .addOption({"force"}, [&o]() -> V {
        o.files.force = true;
        return true;
      }, "restart even if files it had open changed since the checkpoint")
      .addOption({"as-file-owner"}, [&o]() -> V {
        o.asFileOwner = true;
        return true;
      }, "(root) restart an image that records no owner (made by an older mig) as the user and group "
         "that own the image file; without it root refuses such an image")
      .addOption({"lazy"}, [&o]() -> V {
        o.lazy = true;
        return true;
      }, "start the job before its memory is read: its large anonymous regions are filled as it touches "
         "them (each part checked against its checksum first) and in the background (needs root or "
         "vm.unprivileged_userfaultfd = 1). The default for an image of one process with 64 MiB of "
         "memory or more, where that is allowed")
      .addOption({"eager"}, [&o]() -> V {
        o.eager = true;
        return true;
      }, "check and place all of the job's memory before it runs (the default below 64 MiB, or where "
         "lazy pages are not allowed)")
      .addOption({"migrated"}, [&o]() -> V {
        o.migrated.migrated = true;
        return true;
      }, "(shadowd) the job migrated here: its files stay at home")
      .addOption({"data-verified"}, [&o]() -> V {
        o.dataVerified = true;
        return true;
      }, "(shadowd) the data checksums were checked as the image arrived (image/stream_verifier.h): "
         "not read again")
      .addOptionWithArg({"relay"}, [&o](kj::StringPtr v) -> V {
        o.migrated.relay = kj::str(v);
        return true;
      }, "SOCKET", "(shadowd) the relay socket the job's calls home go through")
      .addOptionWithArg({"job-id"}, [&o](kj::StringPtr v) -> V {
        char* end = nullptr;
        errno = 0;
        unsigned long long id = strtoull(v.cStr(), &end, 10);
        if (end == v.cStr() || *end != '\0' || errno != 0 || id == 0) {
          return kj::str("takes a job id > 0, not '", v, "'");
        }
        o.migrated.jobId = id;
        return true;
      }, "ID", "(shadowd) the job's id at home")
      .addOptionWithArg({"local-path"}, [&o](kj::StringPtr v) -> V {
        o.migrated.localPaths.add(kj::str(v));
        return true;
      }, "DIR", "(shadowd) a directory every host has: files under it are opened here (repeatable)")
      .addOptionWithArg({"network"}, [&o](kj::StringPtr v) -> V {
        KJ_IF_MAYBE(p, shadow::networkFromWord(v.cStr())) {
          o.migrated.network = static_cast<uint32_t>(*p);
          return true;
        }
        return kj::str("takes local or rebind, not '", v, "'");
      }, "local|rebind", "local: internet sockets the job creates here are this host's (default: made at "
                         "home, like the ones it had); rebind: also its TCP listening sockets are made again "
                         "here, and its TCP connections reset (migctl migrate --help)")
      .addOptionWithArg({"gate-fd"}, [&o](kj::StringPtr v) -> V {
        char* end = nullptr;
        long n = strtol(v.cStr(), &end, 10);
        if (end == v.cStr() || *end != '\0' || n < 3 || fcntl(static_cast<int>(n), F_GETFD) < 0) {
          return kj::str("needs an open fd number above 2, not '", v, "'");
        }
        o.migrated.gateFd = static_cast<int>(n);
        return true;
      }, "FD", "(shadowd, with --migrated) restore up to \"ready, not running\", write 'R' to socket FD, "
               "and run the job only when 'G' comes back; anything else deletes the image and exits "
               "(the hop's two-phase commit)")
      .addOption({"image-on-gate"}, [&o]() -> V {
        o.migrated.imageOnGate = true;
        return true;
      }, "(shadowd, with --gate-fd) started before the image is complete (a post-copy hop, off the job's "
         "freeze): write 'W' to the gate socket once started, then wait for 'I' on it before reading the "
         "image; its end instead: exit")
      .addOptionWithArg({"postcopy"}, [&o](kj::StringPtr v) -> V {
        char* end = nullptr;
        long n = strtol(v.cStr(), &end, 10);
        if (end == v.cStr() || *end != '\0' || n <= 0 || n > 24L * 3600 * 1000) {
          return kj::str("needs a timeout in milliseconds, not '", v, "'");
        }
        o.migrated.postcopyTimeoutMs = static_cast<int>(n);
        return true;
      }, "MS", "(shadowd, with --gate-fd) a post-copy hop: the pages the image lists as post-copy pages are "
               "fetched from home through the gate socket once the job runs; a page not come within MS "
               "milliseconds kills the job with one line")
      .addOption({"homecoming"}, [&o]() -> V {
        o.migrated.homecoming = true;
        return true;
      }, "(shadowd, the deputy) a hop back home: the job is restored into its deputy's process, which "
         "holds its home fds at their numbers; they are kept, its other fds made again, nothing forwarded")
      .addOption({"check-only"}, [&o]() -> V {
        o.checkOnly = true;
        return true;
      }, "(shadowd, with --homecoming) make every check of the restart and exit 0 without restoring")
      .addOptionWithArg({"carried-fd"}, [&o](kj::StringPtr v) -> V {
        char* end = nullptr;
        long n = strtol(v.cStr(), &end, 10);
        if (end == v.cStr() || *end != '\0' || n < 3 || fcntl(static_cast<int>(n), F_GETFD) < 0) {
          return kj::str("needs an open fd number above 2, not '", v, "'");
        }
        o.migrated.carriedFd = static_cast<int>(n);
        return true;
      }, "FD", "(the deputy, with --homecoming) the answers to calls the job may not have read before its "
               "freeze (shim/forward/carried_replies.h)")
      .addOptionWithArg({"come-back"}, [&o](kj::StringPtr v) -> V {
        char* end = nullptr;
        long n = strtol(v.cStr(), &end, 10);
        if (end == v.cStr() || *end != '\0' || n < 3 || fcntl(static_cast<int>(n), F_GETFD) < 0) {
          return kj::str("needs an open fd number above 2, not '", v, "'");
        }
        o.migrated.comeBackFd = static_cast<int>(n);
        return true;
      }, "FD", "(the deputy, with --homecoming) what makes the deputy again if the restart fails before "
               "it touches the process (deputy/homecoming.h)")
      .addOptionWithArg({"home-gate"}, [&o](kj::StringPtr v) -> V {
        o.migrated.homeGate = kj::str(v);
        return true;
      }, "SOCKET", "(the deputy, a tree's hop home) wait there, in the restorer, for every member of the tree "
                   "to be restorable (shadow/home_gate.h)")
      .addOptionWithArg({"fault"}, [](kj::StringPtr v) -> V {
        setenv("MIG_FAULT", v.cStr(), 1);  // read by shadow::hopFault(), which caches it later
        return true;
      }, "hop:STEP:ACTION", "(the deputy, for tests) a hop fault in this restart (shadow/hop_fault.h)")
      .addOptionWithArg({"homecoming-log"}, [&o](kj::StringPtr v) -> V {
        o.homecomingLog = kj::str(v);
        return true;
      }, "FILE", "(the deputy, with --homecoming) append the restart's messages there, not to the job's "
                 "stderr; a failure ends the process as if killed (SIGKILL), or with --come-back before the "
                 "process is touched, execs the deputy again")
      .addOptionWithArg({"realtime-offset-ns"}, [&o](kj::StringPtr v) -> V {
        char* end = nullptr;
        errno = 0;
        long long n = strtoll(v.cStr(), &end, 10);
        if (errno != 0 || end == v.cStr() || *end != '\0') {
          return kj::str("needs a number of nanoseconds, not '", v, "'");
        }
        o.migrated.realtimeOffsetNs = n;
        return true;
      }, "N", "home's CLOCK_REALTIME minus this host's, in nanoseconds: the job's realtime clock reads "
              "home's time (default 0)")
      .expectArg("FILE", [&o](kj::StringPtr v) -> V {
        o.path = kj::str(v);
        return true;
      })
      .callAfterParsing([&o, &cli, &caller]() -> V {
        // What the restart says goes to resources::restartMessages(), never to the job's
        // fd 2 once the restore put it in place: also why it failed (main() would say it
        // on fd 2).
        KJ_IF_MAYBE(log, o.homecomingLog) {
          // The deputy's stderr is the job's: the hop's log in the spool takes the lines
          // (nowhere, rather than the job's stderr, if it cannot be opened).
          int fd = open(log->cStr(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
          if (fd < 0) fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
          if (fd >= 0) resources::setRestartMessages(fd);
        }
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { cli.status = restart(o, caller); })) {
          if (o.homecomingLog != nullptr) {
            // After the hop's commit: said in the hop's log; the deputy again if nothing
            // of the process was touched yet, else it ends as a lost job does (killed).
            dprintf(resources::restartMessages(), "migctl restart --homecoming: %s\n", e->getDescription().cStr());
            comeBackOrDie(o.migrated);
          }
          dprintf(resources::restartMessages(), "migctl: %s\n", e->getDescription().cStr());
          cli.status = 1;
        }
        return true;
      })
      .build();
  return cli::joinNegativeValues(cli::owning(kj::mv(opts), kj::mv(main)), "--realtime-offset-ns");
}

namespace {

// Who the restarted process runs as: the image's owner (the kernel's word at
// checkpoint, image/host_facts.h fillOwner). Root restarting another user's image drops
// to that user (groups, gid, uid) before it opens any file of the image or runs any
// of its code, so the image gets no right its owner did not have. A user's restart
// runs with that user's rights whatever the image says. Trees need root to fork their
// PIDs, so another user's tree is refused.
void becomeOwner(image::schema::Header::Reader h, const char* path, bool asFileOwner, bool tree) {
  if (geteuid() != 0) return;
  uid_t uid;
  gid_t gid;
  std::vector<gid_t> groups;
  if (h.getOwnerKnown()) {
    uid = h.getOwnerUid();
    gid = h.getOwnerGid();
    for (uint32_t g : h.getOwnerGroups()) groups.push_back(g);
  } else {
    struct stat st {};
    if (stat(path, &st) != 0) fail(kj::str("cannot stat ", path, ": ", strerror(errno)));
    if (!asFileOwner) {
      fail(kj::str(path, " records no owner (made by an older mig): as root, restart it as its user, or pass "
                         "--as-file-owner to run it as the image file's owner (uid ", st.st_uid, ")"));
    }
    uid = st.st_uid;
    gid = st.st_gid;
    groups.push_back(gid);
  }
  if (uid == 0) return;
  if (tree) {
    fail(kj::str(path, " holds a process tree of uid ", uid, ": restarting another user's tree as root is not "
                       "supported (its PIDs need root, and it would run with root's rights); not restarted"));
  }
  if (setgroups(groups.size(), groups.data()) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) {
    fail(kj::str("cannot become uid ", uid, " gid ", gid, ", the owner of ", path, ": ", strerror(errno),
                 "; not restarted"));
  }
  // As any process of that user: its /proc files its own, ptrace-able by it.
  prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
}

// A hop home's restart runs after the commit, when the job exists only in its image
// (docs/design.md "A hop back home"). Phase one (--check-only, a child of home's
// shadowd) also does the part of becomeRestored's work that could fail and needs
// nothing of the deputy's process (the restorer found, the plan built), so that such a
// failure leaves the job away. What can still fail after the commit: the design's limits.
void checkHomecomingWork(image::FileReader& img) {
  std::string restorer = findRestorer();
  if (access(restorer.c_str(), X_OK) != 0) fail(kj::str("cannot run ", restorer.c_str(), ": ", strerror(errno)));
  (void)image::buildRestorePlan(img, nullptr);
  shadow::hopFaultPoint("home-restart", [](kj::String why) { fail(kj::mv(why)); });
}

// The restart's own fds a deputy that comes back must not hold (the plan, the image,
// the forwarding config, the page server's socket): closed by comeBackOrDie.
std::vector<int> g_restartFds;

// A hop home's restart that failed (its line is in the hop's log): the deputy again
// (deputy/homecoming.h), which its shadowd takes as the hop home failed; if that exec
// fails, the job is lost (killed). What the restart did to the process by then stays
// (the job's umask and limits, its fds made anew at its numbers: docs/design.md "A hop
// back home" says why the deputy can hold them).
[[noreturn]] void comeBackOrDie(MigratedOptions& m) {
  char table[4096] = {};
  char deputy[PATH_MAX] = {};
  if (m.comeBackFd >= 0 && pread(m.comeBackFd, table, sizeof(table) - 1, 0) > 0 &&
      sscanf(table, "deputy %4095[^\n]", deputy) == 1) {
    unsetenv("MIG_FAULT");
    unsetenv("MIG_HOME_GATE_FD");
    for (int fd : g_restartFds) close(fd);
    if (m.homeGateFd >= 0) close(m.homeGateFd);  // its tree hears of the failure at once
    endBornAwayAtHome();
    fcntl(resources::restartMessages(), F_SETFD, FD_CLOEXEC);
    auto state = kj::str(m.comeBackFd), carried = kj::str(m.carriedFd);
    const char* argv[] = {deputy, "--again-from", state.cStr(), m.carriedFd >= 0 ? "--carried-fd" : nullptr,
                          carried.cStr(), nullptr};
    execv(deputy, const_cast<char* const*>(argv));
    dprintf(resources::restartMessages(), "migctl restart --homecoming: cannot run %s again: %s\n", deputy,
            strerror(errno));
  }
  kill(getpid(), SIGKILL);
  for (;;) pause();
}

// The ticket's listener the come-back table names ("link FD ..."), or -1.
int comeBackLink(int comeBackFd) {
  char table[4096] = {};
  if (comeBackFd < 0 || pread(comeBackFd, table, sizeof(table) - 1, 0) <= 0) return -1;
  const char* l = strstr(table, "\nlink ");
  return l != nullptr ? atoi(l + 6) : -1;
}

// The listener moved out of the job's way (restoreFiles): the table names its new number.
void renumberLink(int comeBackFd, int from, int to) {
  struct stat st {};
  if (from == to || fstat(comeBackFd, &st) != 0) return;
  std::string table(static_cast<size_t>(st.st_size), '\0');
  if (pread(comeBackFd, table.data(), table.size(), 0) != static_cast<ssize_t>(table.size())) return;
  const std::string old = "\nlink " + std::to_string(from) + " ";
  size_t at = table.find(old);
  if (at == std::string::npos) return;
  table.replace(at, old.size(), "\nlink " + std::to_string(to) + " ");
  if (ftruncate(comeBackFd, 0) != 0 ||
      pwrite(comeBackFd, table.data(), table.size(), 0) != static_cast<ssize_t>(table.size())) {
    dprintf(resources::restartMessages(), "migctl restart --homecoming: cannot renumber the deputy's listener\n");
  }
}

int restart(Options& o, const resources::CallerFds& caller) {
  const bool hop = o.migrated.gateFd >= 0;
  restartTimes().setWho(hop ? (o.migrated.postcopyTimeoutMs > 0 ? "restart post-copy hop" : "restart hop")
                            : (o.lazy ? "restart --lazy" : "restart"));
  restartTimes().mark("start");
  if (o.migrated.imageOnGate) {
    if (o.migrated.gateFd < 0) fail(kj::str("--image-on-gate needs --gate-fd"));
    // The page server a lazy hop needs, forked now, before the job's freeze (its forks
    // and their wait were up to 30 ms of it); handed the image once it is complete, its
    // runs once the plan is made. Where pages cannot be lazy, the hop is eager: none.
    if (resources::lazyPagesUnavailable() == nullptr) o.migrated.pageServer = resources::forkPageServer(getpid());
    // 'W': started (exec'd, libraries loaded), so that shadowd can let a post-copy
    // sender freeze the job only now, not while this process's start takes the CPU.
    char c = 'W';
    ssize_t n;
    do n = send(o.migrated.gateFd, &c, 1, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    if (n == 1) {
      do n = read(o.migrated.gateFd, &c, 1); while (n < 0 && errno == EINTR);
    }
    if (n != 1 || c != 'I') {
      // Nothing of this hop stays here: shadowd deleted its files, maybe before our link
      // process made this log (our stderr), which goes too if it is still ours.
      char path[PATH_MAX];
      ssize_t len = readlink("/proc/self/fd/2", path, sizeof(path) - 1);
      struct stat mine {}, named {};
      if (len > 0) {
        path[len] = '\0';
        if (fstat(STDERR_FILENO, &mine) == 0 && stat(path, &named) == 0 && S_ISREG(named.st_mode) &&
            mine.st_dev == named.st_dev && mine.st_ino == named.st_ino) {
          unlink(path);
        }
      }
      fail(kj::str("not committed: the hop was aborted before its image was complete here"));
    }
    restartTimes().mark("wait-image");
  }
  // A chain directory or an incremental image (checkpoint --every): the whole image
  // made from the chain (image/image_chain.h).
  kj::Own<image::FileReader> whole = image::openWholeImage(o.path);
  image::FileReader& img = *whole;
  const char* path = img.path().cStr();
  if (o.migrated.pageServer >= 0 && img.isTree()) {
    close(o.migrated.pageServer);  // a tree's members are restored eagerly: it ends
    o.migrated.pageServer = -1;
  }
  resources::FileRestoreOptions& options = o.files;
  MigratedOptions& migrated = o.migrated;
  becomeOwner(img.header(), path, o.asFileOwner, img.isTree());
  // It takes this user and groups and indexes the image while this restart checks it
  // and makes the plan.
  if (o.migrated.pageServer >= 0) resources::sendPageServerImage(o.migrated.pageServer, img.fd(), img.path());
  if (o.lazy && o.eager) fail(kj::str("--lazy and --eager: choose one"));
  if (o.lazy) {
    KJ_IF_MAYBE(why, resources::lazyPagesUnavailable()) fail(kj::str("--lazy: ", *why, "; restart without --lazy"));
    if (img.isTree()) fail(kj::str("--lazy: ", path, " holds a process tree; restart it without --lazy"));
  }
  o.lazy = o.lazy || (!o.eager && lazyByDefault(img, o.migrated));
  if (!o.dataVerified && !o.lazy) img.verifyAll();
  KJ_IF_MAYBE(why, image::cpuMismatch(img.header().getCpu(), image::hostXcr0())) {
    fail(kj::heapString(*why));
  }
  resources::checkMappedFiles(img, migrated.migrated);
  restartTimes().mark("open-check");
  if (migrated.gateFd >= 0 && !migrated.migrated) fail(kj::str("--gate-fd needs --migrated"));
  if (migrated.postcopyTimeoutMs > 0 && migrated.gateFd < 0) fail(kj::str("--postcopy needs --gate-fd"));
  if (migrated.homecoming) {
    // Back home: the job's home fds are the deputy's, which this process is; its fds
    // records of them are the stand-ins it had away (checked as a migrated job's).
    // A tree: the job with its children born away (step 3), each forked here with its
    // PID of the host it left (restartBornAway).
    if (migrated.migrated) fail(kj::str("--homecoming takes a migrated job's image, without --migrated"));
    options.migrated = true;
    resources::checkSavedFiles(img, options);
    options.migrated = false;
    if (img.isTree()) {
      checkBornAway(img);
      if (o.checkOnly) {
        img.keepOnlyMember(img.tree().getMembers()[0].getVpid());
        checkHomecomingWork(img);
        return 0;
      }
      restartBornAway(img, path, options, caller, migrated);
    }
    checkHomecomingWork(img);
    if (o.checkOnly) return 0;
    // Its big regions come in lazily from the image in A's spool, as a hop's do: copied
    // here (never mapped from the image, restore_plan.h) they would hold the freeze
    // about 2 ms a MiB on the loaded test VM. --eager, or no userfaultfd: copied.
    const bool lazy = !o.eager && resources::lazyPagesUnavailable() == nullptr;
    becomeRestored(img, path, options, caller, migrated, nullptr, lazy, o.dataVerified);
  }
  if (o.checkOnly) fail(kj::str("--check-only needs --homecoming"));
  if (migrated.migrated) {
    if (migrated.relay == nullptr || migrated.jobId == 0) fail(kj::str("--migrated needs --relay and --job-id"));
    migrated.token = shadow::tokenFromEnv();
  }
  options.migrated = migrated.migrated;  // a migrated job's files are at home, not here
  resources::checkSavedFiles(img, options);
  restartTimes().mark("file-checks");
  if (img.isTree()) {
    if (migrated.migrated) restartBornAway(img, path, options, caller, migrated);
    return restartTree(img, path, options, caller);
  }
  becomeRestored(img, path, options, caller, migrated, nullptr, o.lazy, o.dataVerified);
}

// The hop's two-phase commit, destination side (docs/design.md, "One hop"): every
// check passed and the fds are in place, so the job is "ready, not running". It runs
// only if shadowd answers 'G' (the sender gave it up); anything else (shadowd gone,
// the hop dropped or aborted) means the sender still has it: the image is deleted and
// nothing of the job ever ran here.
void waitAtGate(int gate, const char* path, bool keepOpen) {
  char c = 'R';
  ssize_t n;
  do n = write(gate, &c, 1); while (n < 0 && errno == EINTR);
  if (n == 1) {
    do n = read(gate, &c, 1); while (n < 0 && errno == EINTR);
  }
  if (n != 1 || c != 'G') {
    unlink(path);
    fail(kj::str("not committed: the hop was aborted before the job was released here (its image deleted)"));
  }
  if (!keepOpen) close(gate);
}

}  // namespace

[[noreturn]] void becomeRestored(image::FileReader& img, const char* path, const resources::FileRestoreOptions& options,
                                 const resources::CallerFds& caller, const MigratedOptions& migrated,
                                 const TreeMemberRestart* tree, bool lazy, bool dataVerified) {
  (void)options;
  std::string restorer = findRestorer();
  // A member of a tree that migrated maps what the members share from the objects its
  // root's restart made here (resources/shared_memory.h, MovingShare).
  kj::Array<image::RegionFile> moved;
  if (tree == nullptr && migrated.migrated) moved = resources::movedSharedRegions(img);
  kj::ArrayPtr<const image::RegionFile> mapFrom = moved;
  if (tree != nullptr) mapFrom = tree->sharedRegions;
  image::RestorePlan plan = image::buildRestorePlan(img, mapFrom);
  // A single process's System V objects (also one that migrated, or comes home), made
  // here, in the process that becomes the job (a tree's root made the tree's, on one
  // host or, moved, on this one); removed again if the restart fails.
  const bool makesIpc = tree == nullptr && resources::ipcSection(img) != 0 && !resources::ipcAttachOnly(img);
  if (makesIpc) resources::restoreSysvIpc(img);
  KJ_ON_SCOPE_FAILURE(if (makesIpc) resources::removeSysvIpc(img));
  restartTimes().mark("plan");
  if (lazy) {
    lazy = resources::markLazyPages(plan) > 0;
    if (!dataVerified) resources::verifyEagerSections(img, plan);
  }
  // Post-copy (resources/network_page_source.h): the pages not in the image are lazy
  // pages whose source is home, through the gate once the job is released.
  const bool postcopy = migrated.postcopyTimeoutMs > 0 && resources::postcopyPages(img).size() > 0;
  if (postcopy) {
    KJ_IF_MAYBE(why, resources::lazyPagesUnavailable()) fail(kj::str("post-copy: ", *why));
    if (lazy) fail(kj::str("--lazy and a post-copy image do not go together"));
    plan = resources::addRemotePages(plan, resources::postcopyPages(img));
  }
  // A pre-copy or stop-and-copy hop: the job's big regions come in lazily from the
  // image here (as --lazy), so that the freeze does not hold placing its pages (saved
  // pages are copied, never mapped from the image: restore_plan.h; 1 s for 512 MiB on
  // the loaded test VM; for pre-copy, also the later rounds' pages over the first's).
  // Where a userfaultfd that catches the kernel's accesses cannot be made, the restore
  // is eager as before.
  bool hopLazy = false;
  if (migrated.migrated && !migrated.homecoming && tree == nullptr && !lazy && !postcopy &&
      resources::lazyPagesUnavailable() == nullptr) {
    hopLazy = resources::markLazyPages(plan) > 0;
  }

  int keep[9];
  size_t keepCount = 2;
  auto config = kj::heap<forward::Config>();
  memset(config.get(), 0, sizeof(forward::Config));
  keep[0] = memfd_create("mig-plan", MFD_CLOEXEC);
  if (keep[0] < 0) fail(kj::str("memfd_create: ", strerror(errno)));
  auto bytes = plan.bytes();
  if (write(keep[0], bytes.begin(), bytes.size()) != static_cast<ssize_t>(bytes.size())) {
    fail(kj::str("cannot write the restore plan: ", strerror(errno)));
  }
  keep[1] = open(path, O_RDONLY | O_CLOEXEC);
  if (keep[1] < 0) fail(kj::str("cannot open image ", path, ": ", strerror(errno)));

  if (migrated.homecoming) {
    // A failure from here to the restorer's last step that can fail gives the deputy
    // back (comeBackOrDie, then restore/restorer.cc comeBack): its come-back table, its
    // ticket's listener and the carried answers stay open until then.
    auto& m = const_cast<MigratedOptions&>(migrated);
    if (m.homeGate.size() > 0) {
      // A tree's hop home: a member that fails from here on closes it as it comes back,
      // which calls off the whole tree's return (shadow/home_gate.h).
      m.homeGateFd = connectHomeGate(m.homeGate);
      if (m.homeGateFd < 0) fail(kj::str("cannot reach the tree's gate ", m.homeGate, ": ", strerror(errno)));
    }
    shadow::hopFaultPoint("home-restore", [](kj::String why) { fail(kj::mv(why)); });
    // The deputy's working directory is the job's (its chdirs went home); so are its
    // fds at the numbers it held (kept). No time namespace: the job runs on home's
    // own clocks again, which are ahead of its own by the freezes it had away.
    // Held open, not by name: a directory removed at home while the job was away is
    // still its working directory (closed before restoreFiles, whose numbers are the job's).
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0) fail(kj::str("cannot open the deputy's working directory: ", strerror(errno)));
    resources::applyProcessState(img, true);
    int back = fchdir(cwd);
    int err = errno;
    close(cwd);
    if (back != 0) fail(kj::str("cannot go back to the job's working directory: ", strerror(err)));
    config->magic = forward::kConfigMagic;
    config->size = sizeof(forward::Config);
    config->homecoming = 1;
    config->carriedFd = -1;
    // A child born away (tree_restart.h restartBornAway): the deputy's fds are its home
    // fds, under numbers only its shim knows; held above for the shim to place.
    const bool child = tree != nullptr && tree->readyFd >= 0;
    const int heldFrom = child ? holdDeputyFds(img, caller, *config) : -1;
    const int link = comeBackLink(m.comeBackFd);
    const size_t carriedAt = keepCount;
    if (m.carriedFd >= 0) keep[keepCount++] = m.carriedFd;
    const size_t comeBackAt = keepCount;
    if (m.comeBackFd >= 0) keep[keepCount++] = m.comeBackFd;
    const size_t linkAt = keepCount;
    if (link > 2) keep[keepCount++] = link;
    const size_t readyAt = keepCount;
    if (child) keep[keepCount++] = tree->readyFd;
    const size_t goAt = keepCount;
    if (tree != nullptr) keep[keepCount++] = tree->goFd;
    const size_t gateAt = keepCount;
    if (m.homeGateFd >= 0) keep[keepCount++] = m.homeGateFd;
    {
      // Moved out of the job's way (also when restoreFiles fails half-way), and no
      // longer close-on-exec.
      auto moved = [&]() {
        g_restartFds = {keep[0], keep[1]};
        if (m.carriedFd >= 0) m.carriedFd = keep[carriedAt];
        if (m.comeBackFd >= 0) m.comeBackFd = keep[comeBackAt];
        if (link > 2) renumberLink(m.comeBackFd, link, keep[linkAt]);
        if (child) tree->readyFd = keep[readyAt];
        if (tree != nullptr) tree->goFd = keep[goAt];
        if (m.homeGateFd >= 0) m.homeGateFd = keep[gateAt];
      };
      KJ_DEFER(moved());
      resources::restoreFiles(img, keep, keepCount, caller, nullptr, tree != nullptr ? &tree->pipes : nullptr,
                              /*keepInherited=*/!child, heldFrom);
    }
    config->carriedFd = m.carriedFd;
    if (m.homeGateFd >= 0) setenv("MIG_HOME_GATE_FD", std::to_string(m.homeGateFd).c_str(), 1);  // the restorer's
    plan.setConfigFd(writeForwardConfig(*config));
    g_restartFds.push_back(plan.mutableHeader().configFd);
    if (pwrite(keep[0], plan.bytes().begin(), plan.bytes().size(), 0) != static_cast<ssize_t>(plan.bytes().size())) {
      fail(kj::str("cannot write the restore plan: ", strerror(errno)));
    }
    shadow::hopFaultPoint("home-files", [](kj::String why) { fail(kj::mv(why)); });
    // A child waits for its go, which the job's restorer sends at its point of no
    // return (before it, the job may still come back: then the child never runs).
    if (child) tree->ready();
  } else if (migrated.migrated) {
    resources::applyProcessState(img, true);  // cwd, umask, limits (the fd limit last)
    int64_t jobClock = 0;
    for (size_t i = 0; i < img.sectionCount(); ++i) {
      if (img.section(i).type == static_cast<uint16_t>(image::SectionType::process)) {
        jobClock = img.meta<image::schema::Process>(i).getMonotonicNs();
      }
    }
    KJ_IF_MAYBE(why, keepJobClocks(jobClock)) {
      // Said on shadowd's restore log. The shim covers what it can see (libc's clock
      // functions, clock system calls, absolute monotonic deadlines).
      if (jobClock > 0) {
        config->monotonicOffsetNs = jobClock - monotonicNowNs();
        dprintf(resources::restartMessages(),
                "migctl restart: %s: the shim offsets the job's monotonic clock readings instead\n", why->cStr());
      } else {
        dprintf(resources::restartMessages(), "migctl restart: the job's clocks may jump: %s\n", why->cStr());
      }
    }
    fillForwardConfig(*config, migrated);
    if (migrated.gateFd >= 0) keep[keepCount++] = migrated.gateFd;  // kept clear of the job's fds
    // The page server forked as the restart started, kept clear of them too; with
    // nothing lazy to serve, closed: it ends.
    size_t serverAt = 0;
    if (migrated.pageServer >= 0 && (hopLazy || postcopy)) {
      serverAt = keepCount;
      keep[keepCount++] = migrated.pageServer;
    } else if (migrated.pageServer >= 0) {
      close(migrated.pageServer);
    }
    // With children born away (tree_restart.h restartBornAway): the job's gate and the
    // pipe its children go on, or a child's ready and go pipes.
    const size_t treeFds = keepCount;
    if (tree != nullptr && tree->readyFd >= 0) keep[keepCount++] = tree->readyFd;
    if (tree != nullptr) keep[keepCount++] = tree->goFd;
    resources::restoreFiles(img, keep, keepCount, caller, config.get(), tree != nullptr ? &tree->pipes : nullptr);
    if (tree != nullptr && tree->readyFd >= 0) tree->readyFd = keep[treeFds];
    if (tree != nullptr) tree->goFd = keep[keepCount - 1];
    const int server = serverAt > 0 ? keep[serverAt] : -1;
    plan.setConfigFd(writeForwardConfig(*config));
    if (pwrite(keep[0], plan.bytes().begin(), plan.bytes().size(), 0) != static_cast<ssize_t>(plan.bytes().size())) {
      fail(kj::str("cannot write the restore plan: ", strerror(errno)));
    }
    if (hopLazy || postcopy) {
      restartTimes().mark("files");
      // The page server (forked as this restart started, before the freeze; else now,
      // its socket above the job's fds) gets its work before the gate: not released,
      // this process exits, the server's handover socket closes and it ends. A post-copy
      // one waits for the restorer's userfaultfd and only then asks for pages on the gate.
      plan.mutableHeader().lazySocket = resources::startPageServer(
          img, keep[1], plan, getpid(), postcopy ? keep[2] : -1, migrated.postcopyTimeoutMs, server);
      if (pwrite(keep[0], plan.bytes().begin(), plan.bytes().size(), 0) != static_cast<ssize_t>(plan.bytes().size())) {
        fail(kj::str("cannot write the restore plan: ", strerror(errno)));
      }
      restartTimes().mark("page-server");
    }
    restartTimes().mark("fds-ready");
    if (migrated.gateFd >= 0) waitAtGate(keep[2], path, migrated.postcopyTimeoutMs > 0 && !postcopy);
    if (tree != nullptr) {
      if (migrated.gateFd >= 0) tree->release();  // the job: past its gate
      else tree->ready();                         // its child: all ready, and the job's gate said go
    }
    restartTimes().mark("gate");
    if (migrated.postcopyTimeoutMs > 0 && !postcopy) {
      // A post-copy hop whose image holds every page: no page server; shadowd hears
      // that nothing will be asked.
      resources::PageRequest none{0, 0};
      (void)!write(keep[2], &none, sizeof(none));
      close(keep[2]);
    }
  } else if (tree != nullptr) {
    resources::applyProcessState(img, false);
    tree->ready();  // every check passed: the tree starts only when all its members got here
    resources::restoreFiles(img, keep, keepCount, caller, nullptr, &tree->pipes);
  } else {
    resources::applyProcessState(img, false);
    resources::restoreFiles(img, keep, keepCount, caller);
  }
  if (lazy) {
    // Last, so that its socket takes an fd number none of the job's files has. (A
    // post-copy restart, always --migrated, started its page server above.)
    plan.mutableHeader().lazySocket = resources::startPageServer(img, keep[1], plan, getpid());
    g_restartFds.push_back(plan.mutableHeader().lazySocket);
    if (pwrite(keep[0], plan.bytes().begin(), plan.bytes().size(), 0) != static_cast<ssize_t>(plan.bytes().size())) {
      fail(kj::str("cannot write the restore plan: ", strerror(errno)));
    }
  }
  // Last: every fd is in place (a lowered RLIMIT_NOFILE would refuse the numbers the
  // job got before it lowered it).
  resources::applyFdLimit(img);
  // The restorer's lines (a failure, MIG_RESTORE_DEBUG) go where the restart's do; it
  // closes that fd before the job runs.
  const int messages = resources::restartMessages();
  if (fcntl(messages, F_SETFD, 0) != 0) fail(kj::str("cannot hand the restart's messages fd on: ", strerror(errno)));
  std::string planFd = std::to_string(keep[0]), imageFd = std::to_string(keep[1]), logFd = std::to_string(messages);
  // A hop home: the restorer gives the deputy back if it fails, and releases the job's
  // children born away at its point of no return (restore/restorer.cc).
  std::vector<std::string> words = {restorer, planFd, imageFd, logFd};
  const bool releases = migrated.homecoming && tree != nullptr && tree->readyFd < 0;
  if (releases || (migrated.homecoming && migrated.comeBackFd >= 0)) {
    words.push_back(std::to_string(migrated.comeBackFd));
    words.push_back(std::to_string(migrated.carriedFd));
  }
  if (releases) {
    words.push_back(std::to_string(tree->goFd));
    words.push_back(std::to_string(tree->waiting));
    for (pid_t pid : tree->children) words.push_back(std::to_string(pid));
  }
  std::vector<char*> args;
  for (auto& w : words) args.push_back(w.data());
  args.push_back(nullptr);
  restartTimes().mark("exec");
  restartTimes().write();
  if (migrated.homecoming) shadow::hopFaultPoint("home-exec", [](kj::String why) { fail(kj::mv(why)); });
  execv(restorer.c_str(), args.data());
  fail(kj::str("cannot run ", restorer.c_str(), ": ", strerror(errno)));
}

}  // namespace mig::migctl
