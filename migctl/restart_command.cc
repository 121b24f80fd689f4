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
#include "migctl/commands.h"
#include "migctl/tree_restart.h"
#include "resources/fd_restore.h"
#include "resources/memory.h"
#include "resources/process_attrs.h"
#include "shadow/hex.h"
#include "shadow/network_policy.h"
#include "shim/forward/forward_config.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace mig::migctl {
namespace {

using image::fail;

constexpr const char* kUsage =
    "usage: migctl restart FILE [--force]\n"
    "\n"
    "Continues the process saved in checkpoint image FILE, in this terminal: migctl\n"
    "becomes that process (same PID as far as it can tell, its files reopened at their\n"
    "offsets, its stdin/stdout/stderr connected to this command's own).\n"
    "  --force   restart even if files it had open changed since the checkpoint\n"
    "The same image can be restarted any number of times.\n"
    "An image of a process tree (migctl checkpoint of a process with children) is\n"
    "restarted whole: migctl forks its processes with the PIDs they had (this needs\n"
    "root, and those PIDs free), in their sessions and process groups, and waits for\n"
    "the tree's root, exiting with its status.\n"
    "\n"
    "shadowd restarts migrating jobs with --migrated --relay SOCKET --job-id ID\n"
    "[--local-path DIR]... [--network local|rebind] [--realtime-offset-ns N] and MIG_JOB_TOKEN=HEX in the\n"
    "environment: their fds stay at home and their calls go there.\n"
    "  --network local         internet sockets the job creates here are this host's\n"
    "                          (default: made at home, like the ones it had)\n"
    "  --network rebind        also its TCP listening sockets are made again here,\n"
    "                          and its TCP connections reset (migctl migrate --help)\n"
    "  --realtime-offset-ns N  home's CLOCK_REALTIME minus this host's, in nanoseconds:\n"
    "                          the job's realtime clock reads home's time (default 0)\n"
    "Without the privilege for a time namespace, the shim offsets the job's monotonic\n"
    "clock readings instead, so they go on from the checkpoint's.\n";


int64_t parseNs(const char* option, const char* text) {
  char* end = nullptr;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') fail(kj::str(option, " needs a number of nanoseconds, not '", text, "'"));
  return v;
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
  if (strlen(m.relay) >= sizeof(config.relaySocket)) fail(kj::str("relay socket path too long: ", m.relay));
  strcpy(config.relaySocket, m.relay);
  config.jobId = m.jobId;
  config.realtimeOffsetNs = m.realtimeOffsetNs;
  config.network = m.network;
  if (m.token.size() != sizeof(config.token)) fail(kj::str("a job token must be ", sizeof(config.token), " bytes"));
  memcpy(config.token, m.token.begin(), sizeof(config.token));
  for (const char* p : m.localPaths) {
    if (config.localPathCount == forward::kMaxLocalPaths) fail(kj::str("too many --local-path"));
    if (strlen(p) >= forward::kPathMax) fail(kj::str("--local-path too long: ", p));
    strcpy(config.localPaths[config.localPathCount++], p);
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
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = '\0';
    std::string dir(self, strrchr(self, '/') - self);
    for (const char* rel : {"/mig-restore", "/../restore/mig-restore", "/../libexec/mig/mig-restore"}) {
      std::string p = dir + rel;
      if (access(p.c_str(), X_OK) == 0) return p;
    }
  }
  fail(kj::str("cannot find mig-restore next to migctl; set MIG_RESTORE to its path"));
}

}  // namespace

int restartCommand(int argc, char** argv, const resources::CallerFds& caller) {
  const char* path = nullptr;
  resources::FileRestoreOptions options;
  MigratedOptions migrated;
  for (int i = 0; i < argc; ++i) {
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) fail(kj::str(argv[i], " needs a value"));
      return argv[++i];
    };
    if (strcmp(argv[i], "--force") == 0) options.force = true;
    else if (strcmp(argv[i], "--migrated") == 0) migrated.migrated = true;
    else if (strcmp(argv[i], "--relay") == 0) migrated.relay = value();
    else if (strcmp(argv[i], "--job-id") == 0) migrated.jobId = strtoull(value(), nullptr, 10);
    else if (strcmp(argv[i], "--local-path") == 0) migrated.localPaths.add(value());
    else if (strcmp(argv[i], "--network") == 0) {
      const char* v = value();
      KJ_IF_MAYBE(p, shadow::networkFromWord(v)) { migrated.network = static_cast<uint32_t>(*p); }
      else fail(kj::str("--network takes local or rebind, not ", v));
    }
    else if (strcmp(argv[i], "--realtime-offset-ns") == 0) migrated.realtimeOffsetNs = parseNs("--realtime-offset-ns", value());
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(kUsage, stdout);
      return 0;
    } else if (argv[i][0] != '-' && path == nullptr) path = argv[i];
    else {
      fprintf(stderr, "migctl restart: unexpected argument '%s'\n%s", argv[i], kUsage);
      return 2;
    }
  }
  if (path == nullptr) {
    fprintf(stderr, "migctl restart: no image file given\n%s", kUsage);
    return 2;
  }

  image::FileReader img(path);
  img.verifyAll();
  KJ_IF_MAYBE(why, image::cpuMismatch(img.header().getCpu(), image::hostCpu())) {
    fail(kj::heapString(*why));
  }
  resources::checkMappedFiles(img);
  if (migrated.migrated) {
    if (migrated.relay == nullptr || migrated.jobId == 0) fail(kj::str("--migrated needs --relay and --job-id"));
    migrated.token = shadow::tokenFromEnv();
  }
  options.migrated = migrated.migrated;  // a migrated job's files are at home, not here
  resources::checkSavedFiles(img, options);
  if (img.isTree()) {
    if (migrated.migrated) fail(kj::str(path, " holds a process tree; migrating trees is not built yet"));
    return restartTree(img, path, options, caller);
  }
  becomeRestored(img, path, options, caller, migrated, nullptr);
}

[[noreturn]] void becomeRestored(image::FileReader& img, const char* path, const resources::FileRestoreOptions& options,
                                 const resources::CallerFds& caller, const MigratedOptions& migrated,
                                 const TreeMemberRestart* tree) {
  (void)options;
  std::string restorer = findRestorer();
  image::RestorePlan plan = image::buildRestorePlan(img);

  int keep[3];
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

  resources::applyProcessState(img, migrated.migrated);  // cwd, umask, limits
  if (migrated.migrated) {
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
        fprintf(stderr, "migctl restart: %s: the shim offsets the job's monotonic clock readings instead\n",
                why->cStr());
      } else {
        fprintf(stderr, "migctl restart: the job's clocks may jump: %s\n", why->cStr());
      }
    }
    fillForwardConfig(*config, migrated);
    resources::restoreFiles(img, keep, keepCount, caller, config.get());
    keep[keepCount++] = writeForwardConfig(*config);
    plan.setConfigFd(keep[2]);
    if (pwrite(keep[0], plan.bytes().begin(), plan.bytes().size(), 0) != static_cast<ssize_t>(plan.bytes().size())) {
      fail(kj::str("cannot write the restore plan: ", strerror(errno)));
    }
  } else if (tree != nullptr) {
    tree->ready();  // every check passed: the tree starts only when all its members got here
    resources::restoreFiles(img, keep, keepCount, caller, nullptr, &tree->pipes);
  } else {
    resources::restoreFiles(img, keep, keepCount, caller);
  }
  std::string planFd = std::to_string(keep[0]), imageFd = std::to_string(keep[1]);
  char* args[] = {const_cast<char*>(restorer.c_str()), planFd.data(), imageFd.data(), nullptr};
  execv(restorer.c_str(), args);
  fail(kj::str("cannot run ", restorer.c_str(), ": ", strerror(errno)));
}

}  // namespace mig::migctl
