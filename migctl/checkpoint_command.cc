// `migctl checkpoint PID -o FILE [--stop]`: writes an image of a running process
// and its descendants (one image; migctl/freeze_capture.h's FrozenTree).
#include "image/byte_io.h"
#include "image/file_reader.h"
#include "image/image_error.h"
#include "migctl/commands.h"
#include "migctl/control_client.h"
#include "migctl/freeze_capture.h"
#include "migctl/json_output.h"
#include "resources/socket_state.h"
#include "resources/sysv_ipc.h"

#include <kj/array.h>
#include <kj/debug.h>

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

constexpr const char* kAbout =
    "Writes a checkpoint image of process PID (which runs under libmig.so) and of all "
    "its descendants (children, their children, ... by parent link; a daemon that left "
    "the tree is not taken) to FILE: one image of the whole tree. Every one of them must "
    "run under libmig.so, or nothing is frozen and the checkpoint is refused naming the "
    "one that does not. The processes are frozen together while the image is written "
    "and then go on, unless --stop is given: then they end once the complete image is "
    "on disk, with exit status 86, so a parent can tell it was checkpointed (it did not "
    "finish). "
    "FILE appears only when complete; on any error the process goes on untouched. "
    "What the image cannot hold (a TCP connection, which a restart gives back reset; "
    "connections waiting to be accepted) is said on stderr, one warning line per fd.";

struct Options {
  kj::String pidArg;
  kj::Maybe<kj::String> out;
  bool stop = false;
  bool only = false;
  bool json = false;
  long timeout = 30;
  long maxDeletedMiB = resources::CaptureOptions::kDefaultMaxDeletedFileBytes >> 20;
};

// Waits (bounded) until process `pid` is gone, so a following restart cannot race it.
void waitGone(pid_t pid, int seconds) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return;  // already gone
  struct pollfd p = {pidfd, POLLIN, 0};
  int ready = poll(&p, 1, seconds * 1000);
  close(pidfd);
  if (ready == 0) image::fail(kj::str("process ", pid, " did not end after the checkpoint"));
}

int checkpoint(const Options& o, long pid);

}  // namespace

kj::MainFunc checkpointMain(cli::Context& cli) {
  auto opts = kj::heap<Options>();
  Options& o = *opts;
  auto main = kj::MainBuilder(cli, cli::kVersion, kAbout)
      .addOptionWithArg({'o', "output"}, [&o](kj::StringPtr v) -> kj::MainBuilder::Validity {
        o.out = kj::str(v);
        return true;
      }, "FILE", "where to write the image (required)")
      .addOption({"stop"}, [&o]() -> kj::MainBuilder::Validity {
        o.stop = true;
        return true;
      }, "end the process (exit status 86) after the image is written")
      .addOption({"only"}, [&o]() -> kj::MainBuilder::Validity {
        o.only = true;
        return true;
      }, "PID alone, without its descendants (they go on; what it shares with them is not in the image)")
      .addOptionWithArg({"timeout"}, [&o](kj::StringPtr v) -> kj::MainBuilder::Validity {
        KJ_IF_MAYBE(why, cli::parseCount(v, 1, 86400, o.timeout)) { return kj::mv(*why); }
        return true;
      }, "SECONDS", "how long to wait for the process to freeze (default 30)")
      .addOptionWithArg({"max-deleted-file"}, [&o](kj::StringPtr v) -> kj::MainBuilder::Validity {
        KJ_IF_MAYBE(why, cli::parseCount(v, 0, resources::CaptureOptions::kMaxDeletedFileMiB, o.maxDeletedMiB)) {
          return kj::mv(*why);
        }
        return true;
      }, "MIB", "the largest file the process holds open after it was deleted whose contents the image "
         "keeps (default 256, at most 511); a larger one makes the checkpoint fail, naming it")
      .addOption({"json"}, [&o]() -> kj::MainBuilder::Validity {
        o.json = true;
        return true;
      }, "print the result as one line of JSON (docs/json.md)")
      .expectArg("PID", [&o](kj::StringPtr v) -> kj::MainBuilder::Validity {
        o.pidArg = kj::str(v);
        return true;
      })
      .callAfterParsing([&o, &cli]() -> kj::MainBuilder::Validity {
        long pid = 0;
        if (!parsePid(o.pidArg.cStr(), pid)) return kj::str("'", o.pidArg, "' is not a process ID");
        if (o.out == nullptr) return "no output file given (-o FILE)";
        cli.status = checkpoint(o, pid);
        return true;
      })
      .build();
  return cli::owning(kj::mv(opts), kj::mv(main));
}

namespace {

int checkpoint(const Options& o, long pid) {
  const char* out = KJ_ASSERT_NONNULL(o.out).cStr();
  const bool stop = o.stop;
  const int timeout = static_cast<int>(o.timeout);
  resources::CaptureOptions options;
  options.maxDeletedFileBytes = static_cast<uint64_t>(o.maxDeletedMiB) << 20;
  ControlClient ctl(static_cast<pid_t>(pid));
  image::AtomicFile file(out);  // before the freeze: a bad path fails with the process untouched
  auto t0 = std::chrono::steady_clock::now();
  kj::Maybe<FrozenTree> frozenTree;
  if (!o.only) frozenTree.emplace(ctl, timeout);
  KJ_IF_MAYBE(t, frozenTree) {
    if (t->single()) frozenTree = nullptr;  // no descendants: the image of one process
  }
  resources::CaptureStats stats{};
  kj::String what = kj::str("");
  bool several = false;
  KJ_IF_MAYBE(t, frozenTree) {
    FrozenTree& tree = *t;
    stats = tree.capture(file.sink(), options);
    file.commit();
    several = tree.size() > 1;
    if (several) what = kj::str(" and its tree (", tree.size(), " processes, ", tree.liveCount(), " running)");
    // A tree's TCP connections are not reset on --stop (each member's own fds): their
    // peers see the connections close when the members end.
    if (stop) tree.exitAll(timeout);
    else tree.resume();
  } else {
    stats = freezeAndCapture(ctl, timeout, /*forMigration=*/false, file.sink(), options.maxDeletedFileBytes);
    file.commit();
    const pid_t realPid = ctl.realPid();
    if (stop) {
      resources::sockets::resetOnExit(realPid, stats.connections.asPtr());
      ctl.exitProcess();
      waitGone(realPid, timeout);
    } else {
      ctl.resume();
    }
  }
  if (stop) {
    // The job ended: its System V objects, which the kernel would keep, are in the
    // image and go with it, so that a restart finds their keys and ids free.
    image::FileReader img{kj::StringPtr(out)};
    resources::removeSysvIpc(img);
  }
  auto frozenMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  // What the image lacks, once it is written: the user decides whether a restart of it is
  // good enough (a TCP connection comes back reset, waiting connections are gone).
  for (const kj::String& w : stats.warnings) fprintf(stderr, "migctl checkpoint: warning: %s\n", w.cStr());
  if (o.json) {
    capnp::MallocMessageBuilder m;
    auto c = m.initRoot<out::Checkpoint>();
    c.setPid(static_cast<int32_t>(pid));
    c.setFile(out);
    c.setImageBytes(static_cast<double>(stats.imageBytes));
    c.setPages(static_cast<double>(stats.savedPages));
    c.setThreads(stats.threads);
    c.setFds(stats.fds);
    c.setFrozenMs(frozenMs);
    c.setStopped(stop);
    printJson(c.asReader());
    return 0;
  }
  printf("checkpoint of process %ld%s written to %s: %.1f MiB, %llu pages, %u threads, %u fds; "
         "frozen %.1f ms%s\n",
         pid, what.cStr(), out, static_cast<double>(stats.imageBytes) / (1 << 20),
         static_cast<unsigned long long>(stats.savedPages), stats.threads, stats.fds, frozenMs,
         stop ? (several ? "; processes ended" : "; process ended") : "");
  return 0;
}

}  // namespace
}  // namespace mig::migctl
