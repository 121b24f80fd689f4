// `migctl checkpoint PID -o FILE [--stop]`: writes an image of a running process
// and its descendants (one image; migctl/freeze_capture.h's FrozenTree).
#include "image/byte_io.h"
#include "image/image_error.h"
#include "migctl/commands.h"
#include "migctl/control_client.h"
#include "migctl/freeze_capture.h"

#include <kj/array.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <csignal>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mig::migctl {
namespace {

constexpr const char* kUsage =
    "usage: migctl checkpoint PID -o FILE [--stop] [--only] [--timeout SECONDS]\n"
    "\n"
    "Writes a checkpoint image of process PID (which runs under libmig.so) and of\n"
    "all its descendants (children, their children, ... by parent link; a daemon\n"
    "that left the tree is not taken) to FILE: one image of the whole tree. Every\n"
    "one of them must run under libmig.so, or nothing is frozen and the checkpoint\n"
    "is refused naming the one that does not. The processes are frozen together\n"
    "while the image is written and then go on, unless --stop is given: then they\n"
    "end once the complete image is on disk, with exit status 86, so a parent can\n"
    "tell it was checkpointed (it did not finish).\n"
    "FILE appears only when complete; on any error the process goes on untouched.\n"
    "  -o FILE            where to write the image (required)\n"
    "  --stop             end the process (exit status 86) after the image is written\n"
    "  --only             PID alone, without its descendants (they go on; what it\n"
    "                     shares with them is not in the image)\n"
    "  --timeout SECONDS  how long to wait for the process to freeze (default 30)\n";

// Waits (bounded) until process `pid` is gone, so a following restart cannot race it.
void waitGone(pid_t pid, int seconds) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return;  // already gone
  struct pollfd p = {pidfd, POLLIN, 0};
  int ready = poll(&p, 1, seconds * 1000);
  close(pidfd);
  if (ready == 0) image::fail(kj::str("process ", pid, " did not end after the checkpoint"));
}

}  // namespace

int checkpointCommand(int argc, char** argv) {
  const char* pidArg = nullptr;
  const char* out = nullptr;
  bool stop = false;
  bool only = false;
  int timeout = 30;
  for (int i = 0; i < argc; ++i) {
    if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) out = argv[++i];
    else if (strcmp(argv[i], "--stop") == 0) stop = true;
    else if (strcmp(argv[i], "--only") == 0) only = true;
    else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) timeout = atoi(argv[++i]);
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(kUsage, stdout);
      return 0;
    } else if (argv[i][0] != '-' && pidArg == nullptr) pidArg = argv[i];
    else {
      fprintf(stderr, "migctl checkpoint: unexpected argument '%s'\n%s", argv[i], kUsage);
      return 2;
    }
  }
  long pid = 0;
  if (pidArg != nullptr && !parsePid(pidArg, pid)) {
    fprintf(stderr, "migctl checkpoint: '%s' is not a process ID\n", pidArg);
    return 2;
  }
  if (pidArg == nullptr || out == nullptr || timeout <= 0) {
    fprintf(stderr, "migctl checkpoint: %s\n%s", pidArg == nullptr ? "no PID given" : "no output file given (-o FILE)", kUsage);
    return 2;
  }

  ControlClient ctl(static_cast<pid_t>(pid));
  image::AtomicFile file(out);  // before the freeze: a bad path fails with the process untouched
  auto t0 = std::chrono::steady_clock::now();
  kj::Maybe<FrozenTree> frozenTree;
  if (!only) frozenTree.emplace(ctl, timeout);
  KJ_IF_MAYBE(t, frozenTree) {
    if (t->single()) frozenTree = nullptr;  // no descendants: the image of one process
  }
  KJ_IF_MAYBE(t, frozenTree) {
    FrozenTree& tree = *t;
    resources::CaptureStats stats = tree.capture(file.sink());
    file.commit();
    auto frozenMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (stop) tree.exitAll(timeout);
    else tree.resume();
    kj::String what = tree.size() == 1 ? kj::str("") : kj::str(" and its tree (", tree.size(), " processes, ", tree.liveCount(), " running)");
    printf("checkpoint of process %ld%s written to %s: %.1f MiB, "
           "%llu pages, %u threads, %u fds; frozen %.1f ms%s\n",
           pid, what.cStr(), out, static_cast<double>(stats.imageBytes) / (1 << 20),
           static_cast<unsigned long long>(stats.savedPages), stats.threads, stats.fds, frozenMs,
           stop ? (tree.size() == 1 ? "; process ended" : "; processes ended") : "");
    return 0;
  }
  resources::CaptureStats stats = freezeAndCapture(ctl, timeout, /*forMigration=*/false, file.sink());
  file.commit();
  const pid_t realPid = ctl.realPid();
  auto frozenMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (stop) {
    ctl.exitProcess();
    waitGone(realPid, timeout);
  } else {
    ctl.resume();
  }
  printf("checkpoint of process %ld written to %s: %.1f MiB, %llu pages, %u threads, %u fds; "
         "frozen %.1f ms%s\n",
         pid, out, static_cast<double>(stats.imageBytes) / (1 << 20),
         static_cast<unsigned long long>(stats.savedPages), stats.threads, stats.fds, frozenMs,
         stop ? "; process ended" : "");
  return 0;
}

}  // namespace mig::migctl
