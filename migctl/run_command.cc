// `migctl run -- PROGRAM ARGS...`: runs PROGRAM under libmig.so (the same as
// LD_PRELOAD=/path/to/libmig.so PROGRAM ARGS..., without knowing the path). With
// --anywhere, a helper process asks this host's shadowd to place the job once its shim
// is up (Local.place: docs/policies.md, Placement): the program itself is exec'd in
// place as without it (its PID, exit status and terminal are the command's).
#include "image/image_error.h"
#include "migctl/commands.h"
#include "migctl/local_link.h"
#include "shadow/error.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <kj/vector.h>

namespace mig::migctl {
namespace {

constexpr const char* kAbout =
    "Runs PROGRAM under mig (preloading libmig.so), so that it can be checkpointed "
    "and migrated. The library is found next to migctl, or set MIG_LIBMIG to it.";

std::string findLibmig() {
  if (const char* env = getenv("MIG_LIBMIG")) return env;
  KJ_IF_MAYBE(p, cli::findBesideSelf({"/libmig.so", "/../shim/libmig.so", "/../lib/libmig.so",
                                      "/../lib/x86_64-linux-gnu/libmig.so"},
                                     R_OK)) {
    char real[PATH_MAX];
    return realpath(p->c_str(), real) ? real : *p;
  }
  image::fail(kj::str("cannot find libmig.so next to migctl; set MIG_LIBMIG to its path"));
}

// How long the helper waits for the program's shim to listen, and for the move.
constexpr int kShimWaitMs = 20000;
constexpr uint64_t kPlaceTimeoutMs = 600000;

// Whether the shim of process `pid` listens on its control socket yet
// (@mig/UID/ctl/PID, which shadowd's list of jobs looks for too).
bool shimListening(pid_t pid) {
  FILE* f = fopen("/proc/net/unix", "re");
  if (f == nullptr) return false;
  char name[64];
  snprintf(name, sizeof name, "@mig/%u/ctl/%d", getuid(), pid);
  size_t n = strlen(name);
  char line[512];
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) {
    const char* at = strstr(line, name);
    found = at != nullptr && (at[n] == '\n' || at[n] == ' ' || at[n] == '\0');
  }
  fclose(f);
  return found;
}

// The helper (reparented away from the job, so that the job never sees it as a child):
// waits for the shim, asks shadowd to place the job, says in one line on stderr what
// became of it.
[[noreturn]] void placeJob(pid_t job, const std::string& socket) {
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {  // the job's input and output are the job's alone
    dup2(null, 0);
    dup2(null, 1);
  }
  struct timespec tick = {0, 20 * 1000 * 1000};
  int waited = 0;
  while (!shimListening(job)) {
    if (kill(job, 0) != 0) _exit(0);  // it ended (or exec failed): nothing to place
    if (waited >= kShimWaitMs) {
      fprintf(stderr, "migctl run: PID %d stays here: its libmig.so did not start within %d s\n", job,
              kShimWaitMs / 1000);
      _exit(1);
    }
    nanosleep(&tick, nullptr);
    waited += 20;
  }
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    LocalLink link(kj::StringPtr(socket.c_str()));
    auto req = link.local.placeRequest();
    req.setPid(job);
    auto r = link.wait(req.send(), kPlaceTimeoutMs, "placing the job");
    if (r.getMoved()) {
      fprintf(stderr, "migctl run: PID %d moved to %s (where it gets the most CPU), frozen %.1f ms\n", job,
              r.getDestination().cStr(), r.getFreezeMs());
    } else {
      fprintf(stderr, "migctl run: PID %d stays here: %s\n", job, r.getReason().cStr());
    }
  })) {
    fprintf(stderr, "migctl run: PID %d stays here: placing it failed: %s\n", job,
            shadow::oneLine(e->getDescription()).cStr());
    _exit(1);
  }
  _exit(0);
}

[[noreturn]] void run(kj::ArrayPtr<const kj::StringPtr> program, bool anywhere, const std::string& socket) {
  if (anywhere) {
    pid_t self = getpid();
    pid_t child = fork();
    if (child < 0) image::fail(kj::str("cannot fork the placing helper: ", strerror(errno)));
    if (child == 0) {
      if (fork() == 0) placeJob(self, socket);
      _exit(0);
    }
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
  }
  std::string lib = findLibmig();
  const char* old = getenv("LD_PRELOAD");
  std::string preload = old && *old ? lib + ":" + old : lib;
  setenv("LD_PRELOAD", preload.c_str(), 1);
  auto args = kj::heapArray<char*>(program.size() + 1);
  for (size_t i = 0; i < program.size(); ++i) args[i] = const_cast<char*>(program[i].cStr());
  args[program.size()] = nullptr;
  execvp(args[0], args.begin());
  fprintf(stderr, "migctl run: cannot run %s: %s\n", args[0], strerror(errno));
  fflush(stdout);
  _exit(127);
}

}  // namespace

kj::MainFunc runMain(cli::Context& cli) {
  struct Parsed {
    kj::Vector<kj::StringPtr> program;
    bool anywhere = false;
    kj::String socket;
  };
  auto parsed = kj::heap<Parsed>();
  auto& p = parsed->program;
  auto& o = *parsed;
  kj::MainBuilder builder(cli, cli::kVersion, kAbout);
  builder.addOption({"anywhere"}, [&o]() -> kj::MainBuilder::Validity {
    o.anywhere = true;
    return true;
  }, "start it here (its home), then move it at once to the host where it gets the most CPU, "
     "or leave it here when none is better; one line on stderr says which (needs shadowd)");
  addSocketOption(builder, o.socket);
  auto main = builder
      .expectArg("PROGRAM", [&p](kj::StringPtr v) -> kj::MainBuilder::Validity {
        p.add(v);
        return true;
      })
      .expectZeroOrMoreArgs("ARGS", [&p](kj::StringPtr v) -> kj::MainBuilder::Validity {
        p.add(v);
        return true;
      })
      .callAfterParsing([&o]() -> kj::MainBuilder::Validity {
        run(o.program, o.anywhere, std::string(o.socket.cStr()));
      })
      .build();
  return [parsed = kj::mv(parsed), main = kj::mv(main)](kj::StringPtr name,
                                                         kj::ArrayPtr<const kj::StringPtr> params) mutable {
    // Everything from PROGRAM on is the program's, its options too: `migctl run
    // PROGRAM -x` is `migctl run -- PROGRAM -x`. Only migctl's own options come before
    // it: --help/-h, --anywhere, --socket PATH.
    kj::Vector<kj::StringPtr> args;
    size_t i = 0;
    bool help = false;
    for (; i < params.size(); ++i) {
      if (params[i] == "--help" || params[i] == "-h") {
        help = true;
      } else if (params[i] == "--anywhere" || params[i].startsWith("--socket=")) {
        args.add(params[i]);
      } else if (params[i] == "--socket" && i + 1 < params.size()) {
        args.add(params[i]);
        args.add(params[++i]);
      } else {
        break;
      }
    }
    if (help) {
      args.add("--help");
    } else {
      if (i == params.size() || params[i] != "--") args.add("--");
      args.addAll(params.slice(i, params.size()));
    }
    main(name, args.asPtr());
  };
}

}  // namespace mig::migctl
