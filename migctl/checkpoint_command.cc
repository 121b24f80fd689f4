// `migctl checkpoint PID -o FILE [--stop]`: writes an image of a running process
// and its descendants (one image; migctl/freeze_capture.h's FrozenTree).
#include "image/byte_io.h"
#include "image/file_reader.h"
#include "image/image_error.h"
#include "migctl/commands.h"
#include "migctl/control_client.h"
#include "migctl/freeze_capture.h"
#include "migctl/json_output.h"
#include "migctl/periodic_checkpoint.h"
#include "resources/lazy_pages.h"
#include "resources/process_tree.h"
#include "resources/socket_state.h"
#include "resources/sysv_ipc.h"
#include "shadow/hop_times.h"

#include <kj/array.h>
#include <kj/debug.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
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
    "one that does not. They are frozen together only to take their state and "
    "write-protect their memory; they run on while their memory is written, a page one "
    "writes being copied first, so the image is the tree as it was at the freeze (a "
    "concurrent checkpoint; where one cannot make the userfaultfd this needs, or gives "
    "memory back meanwhile, it is written frozen instead, as the result line says). "
    "They go on after, unless --stop "
    "is given: then they end once the complete image is on disk, with exit status 86, so "
    "a parent can tell it was checkpointed (it did not finish). "
    "FILE appears only when complete; on any error the process goes on untouched. "
    "What the image cannot hold (a TCP connection, which a restart gives back reset; "
    "connections waiting to be accepted) is said on stderr, one warning line per fd.";

struct Options {
  kj::String pidArg;
  kj::Maybe<kj::String> out;
  bool stop = false;
  bool only = false;
  bool json = false;
  bool stopTheWorld = false;
  double every = 0;  // --every: a chain of incremental images (periodic_checkpoint.h)
  long count = 0;
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
      .addOption({"stop-the-world"}, [&o]() -> kj::MainBuilder::Validity {
        o.stopTheWorld = true;
        return true;
      }, "keep the process frozen until its whole memory is written (no concurrent checkpoint)")
      .addOptionWithArg({"every"}, [&o](kj::StringPtr v) -> kj::MainBuilder::Validity {
        char* end = nullptr;
        o.every = strtod(v.cStr(), &end);
        if (end == v.cStr() || *end != '\0' || !(o.every >= 0.1 && o.every <= 86400.0 * 365)) {
          return kj::str("--every wants seconds between 0.1 and a year, not '", v, "'");
        }
        return true;
      }, "SECONDS", "keep a chain of images in the directory given by -o, one every SECONDS until the "
         "process ends: the first whole, each later one holding only the pages written since the one "
         "before (migctl restart DIR restarts the newest; migctl image merge makes one whole image)")
      .addOptionWithArg({"count"}, [&o](kj::StringPtr v) -> kj::MainBuilder::Validity {
        KJ_IF_MAYBE(why, cli::parseCount(v, 1, 1000000, o.count)) { return kj::mv(*why); }
        return true;
      }, "N", "with --every: stop after N images (default: when the process ends)")
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
        if (o.count > 0 && o.every == 0) return "--count needs --every";
        if (o.every > 0) {
          if (o.stop || o.json) return "--every cannot be given with --stop or --json";
          PeriodicOptions p{static_cast<pid_t>(pid), KJ_ASSERT_NONNULL(o.out), o.every, o.count,
                            static_cast<int>(o.timeout), static_cast<uint64_t>(o.maxDeletedMiB) << 20, o.only};
          cli.status = periodicCheckpoints(p);
          return true;
        }
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
  auto ctl = kj::heap<ControlClient>(static_cast<pid_t>(pid));
  auto file = kj::heap<image::AtomicFile>(out);  // before the freeze: a bad path fails with the process untouched
  // Concurrent checkpoint: the userfaultfds come first, each on a connection of its own
  // (the shim ends it after handing the fd over). --stop needs none: the job ends anyway.
  int uffd = -1;
  std::map<pid_t, int> memberUffds;  // the tree's other live members': kernel PID -> fd
  KJ_DEFER(for (auto& entry : memberUffds) if (entry.second >= 0) close(entry.second));
  kj::String notConcurrent;
  const pid_t self = ctl->realPid();
  // A lazily restarted job's page server must be done first: pages it has not placed
  // read as never touched, and its userfaultfd would keep ours from registering.
  resources::waitForLazyPages(self);
  KJ_IF_MAYBE(object, resources::firstSysvObject(kj::arrayPtr(&self, 1))) {
    // Its segments are written from the ipc section, which the frozen capture makes.
    // (A tree's ipc section is always taken frozen: its members' objects need no check.)
    notConcurrent = kj::str("it uses the ", *object);
  } else if (!stop && !o.stopTheWorld) {
    uffd = ctl->copyOnWrite(notConcurrent);
    ctl = kj::heap<ControlClient>(static_cast<pid_t>(pid));
    auto tree = o.only || uffd < 0 ? kj::Vector<resources::TreeProcess>() : resources::listTree(self);
    for (size_t i = 1; i < tree.size(); ++i) {
      if (tree[i].zombie) continue;
      // One that cannot be reached (ended meanwhile, not under mig) is FrozenTree's to
      // judge; without its fd the tree is written frozen.
      try {
        ControlClient member(tree[i].pid);
        int fd = member.copyOnWrite(notConcurrent);
        if (fd < 0) break;
        memberUffds[tree[i].pid] = fd;
      } catch (const kj::Exception&) {
      }
    }
  }
  KJ_DEFER(if (uffd >= 0) close(uffd));
  // The concurrent freeze's breakdown ($MIG_HOP_TIMES, shadow/hop_times.h; bench/tree_bench.sh).
  shadow::HopTimes times("checkpoint");
  kj::Function<void(const char*)> mark = [&](const char* phase) { times.mark(phase); };
  options.mark = times.on() ? &mark : nullptr;
  auto t0 = std::chrono::steady_clock::now();
  kj::Maybe<FrozenTree> frozenTree;
  if (!o.only) frozenTree.emplace(*ctl, timeout, options.mark);
  KJ_IF_MAYBE(t, frozenTree) {
    if (t->single()) frozenTree = nullptr;  // no descendants: the image of one process
  }
  resources::CaptureStats stats{};
  kj::String what = kj::str("");
  bool several = false;
  double frozenMs = -1;
  kj::String mode = kj::str("stop-the-world");
  auto concurrentMode = [](double totalMs, const resources::CopyBeforeWriteStats& pages, uint64_t madeHugeBytes) {
    return kj::str("concurrent: written in ", static_cast<long>(totalMs + 0.5), " ms while it ran, ",
                   pages.faultCopies, " pages copied before its writes",
                   madeHugeBytes > 0 ? kj::str(", ", (madeHugeBytes + (1 << 19)) >> 20, " MiB made huge pages first")
                                     : kj::str());
  };
  KJ_IF_MAYBE(t, frozenTree) {
    kj::Maybe<resources::ConcurrentTreeResult> concurrent;
    std::chrono::steady_clock::time_point resumedAt;
    if (uffd >= 0) {
      memberUffds[self] = uffd;
      uffd = -1;
      concurrent = t->captureConcurrently(file->sink(), options, memberUffds, resumedAt);
    }
    several = t->size() > 1;
    if (several) what = kj::str(" and its tree (", t->size(), " processes, ", t->liveCount(), " running)");
    KJ_IF_MAYBE(r, concurrent) {
      if (r->ok) {
        file->commit();
        stats = kj::mv(r->stats);
        frozenMs = std::chrono::duration<double, std::milli>(resumedAt - t->frozenAt()).count();
        times.setWho(kj::str("checkpoint tree of ", t->size()));
        times.write();
        auto now = std::chrono::steady_clock::now();
        mode = concurrentMode(std::chrono::duration<double, std::milli>(now - resumedAt).count(), r->pages, 0);
      } else {
        // The image of that instant cannot be completed: take one of this instant, frozen.
        notConcurrent = kj::mv(r->why);
        file = nullptr;  // the same temporary name: gone before it is made again
        file = kj::heap<image::AtomicFile>(out);
        frozenTree = nullptr;
        ctl = kj::heap<ControlClient>(static_cast<pid_t>(pid));
        FrozenTree& again = frozenTree.emplace(*ctl, timeout);
        t0 = again.frozenAt();
        stats = again.capture(file->sink(), options);
        file->commit();
        several = again.size() > 1;
        if (several) what = kj::str(" and its tree (", again.size(), " processes, ", again.liveCount(), " running)");
        again.resume();
      }
    } else {
      if (uffd < 0 && notConcurrent.size() == 0 && !stop && !o.stopTheWorld) {
        notConcurrent = kj::str("a process joined the tree since its look");
      }
      t0 = t->frozenAt();
      stats = t->capture(file->sink(), options);
      file->commit();
      // A tree's TCP connections are not reset on --stop (each member's own fds): their
      // peers see the connections close when the members end.
      if (stop) t->exitAll(timeout);
      else t->resume();
    }
  } else if (uffd >= 0) {
    auto writeStart = std::chrono::steady_clock::now();
    int fd = uffd;
    uffd = -1;
    ConcurrentResult r =
        freezeAndCaptureConcurrently(*ctl, timeout, fd, file->sink(), options.maxDeletedFileBytes, options.mark);
    if (r.ok) {
      times.setWho("checkpoint of 1");
      times.write();
      file->commit();
      stats = kj::mv(r.stats);
      frozenMs = r.frozenMs;
      double totalMs =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - writeStart).count();
      mode = concurrentMode(totalMs, r.pages, r.madeHugeBytes);
    } else {
      // The image of that instant cannot be completed: take one of this instant, frozen.
      notConcurrent = kj::mv(r.why);
      file = nullptr;  // the same temporary name: gone before it is made again
      file = kj::heap<image::AtomicFile>(out);
      ctl = kj::heap<ControlClient>(static_cast<pid_t>(pid));
      t0 = std::chrono::steady_clock::now();
      stats = freezeAndCapture(*ctl, timeout, /*forMigration=*/false, file->sink(), options.maxDeletedFileBytes);
      file->commit();
      ctl->resume();
    }
  } else {
    stats = freezeAndCapture(*ctl, timeout, /*forMigration=*/false, file->sink(), options.maxDeletedFileBytes);
    file->commit();
    const pid_t realPid = ctl->realPid();
    if (stop) {
      resources::sockets::resetOnExit(realPid, stats.connections.asPtr());
      ctl->exitProcess();
      waitGone(realPid, timeout);
    } else {
      ctl->resume();
    }
  }
  if (stop) {
    // The job ended: its System V objects, which the kernel would keep, are in the
    // image and go with it, so that a restart finds their keys and ids free.
    image::FileReader img{kj::StringPtr(out)};
    resources::removeSysvIpc(img);
  }
  if (frozenMs < 0) {
    frozenMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (notConcurrent.size() > 0) mode = kj::str("stop-the-world: ", notConcurrent);
  }
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
    c.setMode(mode);
    printJson(c.asReader());
    return 0;
  }
  printf("checkpoint of process %ld%s written to %s: %.1f MiB, %llu pages, %u threads, %u fds; "
         "frozen %.1f ms (%s)%s\n",
         pid, what.cStr(), out, static_cast<double>(stats.imageBytes) / (1 << 20),
         static_cast<unsigned long long>(stats.savedPages), stats.threads, stats.fds, frozenMs, mode.cStr(),
         stop ? (several ? "; processes ended" : "; process ended") : "");
  return 0;
}

}  // namespace
}  // namespace mig::migctl
