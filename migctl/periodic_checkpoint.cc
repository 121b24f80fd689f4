// See periodic_checkpoint.h. The first image of a run is whole; the pages the process
// writes after it are tracked as for pre-copy (resources/dirty_pages.h: the job's
// userfaultfd in asynchronous write-protect mode, PAGEMAP_SCAN), and each later image
// holds only those, with a keptPages section for the rest of what the chain holds. The
// image's pages are copied into migctl's memory (resources::FrozenCopy: a memory copy,
// not a file write and sync) in rounds while the process runs, each what it wrote since
// the round before, as a pre-copy hop sends them; then it is frozen while its state is
// taken and what it wrote during the last round is copied, and runs while the image is
// written. An image is complete in DIR once it is renamed into place, so a chain is
// restartable from every image written.
#include "migctl/periodic_checkpoint.h"

#include "image/byte_io.h"
#include "image/host_facts.h"
#include "image/image_chain.h"
#include "image/image_error.h"
#include "image/writer.h"
#include "migctl/control_client.h"
#include "resources/copy_before_write.h"
#include "resources/dirty_pages.h"
#include "resources/lazy_pages.h"
#include "resources/memory.h"
#include "resources/proc_file.h"
#include "resources/process_capture.h"
#include "resources/sysv_ipc.h"
#include "resources/process_tree.h"
#include "shadow/hop_times.h"

#include <capnp/message.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mig::migctl {

using resources::PageSpan;

namespace {

constexpr uint64_t kPage = 4096;

// The number after the highest ckpt-NNNN.mig in `dir` (a new run goes on numbering).
unsigned nextNumber(kj::StringPtr dir) {
  unsigned next = 1;
  KJ_IF_MAYBE(newest, image::newestInChain(dir)) {
    const char* base = strrchr(newest->cStr(), '/');
    unsigned n = 0;
    if (base != nullptr && sscanf(base + 1, "ckpt-%u.mig", &n) == 1) next = n + 1;
  }
  return next;
}

// What the tracker found written or untracked since its last look, with the job's
// `regions`: no longer as the chain holds it (`held`) nor as `store` holds it (`current`).
void takeWrites(resources::DirtyPageTracker& tracker, kj::ArrayPtr<const resources::MappedRegion> regions,
                resources::PageRangeSet& held, resources::PageRangeSet& untracked, resources::PageRangeSet& current) {
  resources::PageRangeSet w, u;
  tracker.collect(regions, w, u);
  for (auto* set : {&w, &u}) {
    for (auto& r : set->ranges()) {
      held.remove(r.first, r.second);
      current.remove(r.first, r.second);
    }
  }
  for (auto& r : u.ranges()) untracked.add(r.first, r.second);
}

// Rounds of copying into `store` while the job runs, until a round copies little or not
// half of the one before: the first copies what the image is to carry (what the job has
// and the chain does not hold, `held`), each later one what was written since the round
// before. Leaves in `current` the pages copied and not written since. A round that fails
// (the job unmapped memory under it) ends them: what was copied before it stays good.
void copyWhileRunning(pid_t pid, resources::DirtyPageTracker& tracker, resources::PageStore& store, uint64_t limit,
                      resources::PageRangeSet& held, resources::PageRangeSet& untracked,
                      resources::PageRangeSet& current) {
  constexpr int kRounds = 3;
  constexpr uint64_t kSmall = 4u << 20;
  resources::ProcPageSource running(pid);
  uint64_t last = 0;
  for (int round = 0; round < kRounds; ++round) {
    auto regions = running.regions();
    takeWrites(tracker, regions, held, untracked, current);
    resources::PageRangeSet skip = current;  // copied already, held by the chain, or untracked
    for (auto* set : {&held, &untracked}) {
      for (auto& r : set->ranges()) skip.add(r.first, r.second);
    }
    kj::Vector<PageSpan> toCopy;
    uint64_t bytes = 0;
    for (const auto& r : regions) {
      // Saved whole: the tracker does not see the file's page show through after
      // MADV_DONTNEED, so such pages are copied in the freeze.
      if (r.saveWhole) continue;
      kj::Vector<PageSpan> present;
      running.pagesToSave(r, present);
      for (const PageSpan& s : present) skip.split(s.addr, s.addr + s.pages * kPage, nullptr, &toCopy);
    }
    for (const PageSpan& s : toCopy) bytes += s.pages * kPage;
    try {
      if (!store.copy(running, toCopy, limit)) break;
    } catch (const kj::Exception&) {
      break;
    }
    for (const PageSpan& s : toCopy) current.add(s.addr, s.addr + s.pages * kPage);
    bool enough = bytes < kSmall || (round > 0 && bytes * 2 > last);
    last = bytes;
    if (enough) break;
  }
}

}  // namespace

int periodicCheckpoints(const PeriodicOptions& o) {
  if (mkdir(o.dir.cStr(), 0700) != 0 && errno != EEXIST) {
    image::fail(kj::str("cannot make chain directory ", o.dir, ": ", strerror(errno)));
  }
  struct stat st {};
  if (stat(o.dir.cStr(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    image::fail(kj::str(o.dir, " is not a directory: --every writes a chain of images into one"));
  }
  kj::String why;
  auto ctl = kj::heap<ControlClient>(o.pid);
  const pid_t realPid = ctl->realPid();
  if (!o.only && resources::listTree(realPid).size() > 1) {
    image::fail(kj::str("process ", o.pid, " has children; a chain holds one process (--only takes it alone)"));
  }
  KJ_IF_MAYBE(object, resources::firstSysvObject(kj::arrayPtr(&realPid, 1))) {
    image::fail(kj::str("process ", o.pid, " uses the ", *object,
                        "; a chain does not hold System V IPC yet (a single checkpoint without --every does)"));
  }
  resources::waitForLazyPages(realPid);  // see checkpoint_command.cc
  int uffd = ctl->trackWrites(why);
  if (uffd < 0) image::fail(kj::str("--every needs the pages the process writes tracked: ", why));
  resources::DirtyPageTracker tracker(realPid, uffd);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, realPid, 0));
  if (pidfd < 0) image::fail(kj::str("process ", o.pid, " is gone"));
  KJ_DEFER(close(pidfd));

  unsigned number = nextNumber(o.dir);
  kj::String parent;         // file name of the image before, "" for the first of this run
  // Its parent section, made while the job runs (reading the image's index is no part
  // of a freeze).
  kj::Own<capnp::MallocMessageBuilder> parentSection;
  resources::PageRangeSet chain;  // pages the chain holds as the process has them
  kj::Array<kj::byte> copyBuffer;  // resources::FrozenCopy's, kept from image to image
  for (long k = 1;; ++k) {
    ctl = kj::heap<ControlClient>(o.pid);
    const uint64_t limit = resources::frozenCopyLimit();
    resources::growFrozenCopyBuffer(realPid, limit, copyBuffer);
    // Where an image's freeze goes, one line per image in $MIG_HOP_TIMES (bench/chain_bench.sh).
    shadow::HopTimes times(kj::str("chain image ", k));
    times.mark("start");
    resources::PageStore store(copyBuffer);
    // In the chain and not written since (none for the first image), made while the job
    // runs and then less what the freeze finds written.
    resources::PageRangeSet held = kj::mv(chain);
    resources::PageRangeSet untracked, current;
    copyWhileRunning(realPid, tracker, store, limit, held, untracked, current);
    // Room for pages that become present before the freeze, made while the job runs.
    store.reserve(16u << 20);
    times.mark("copy-running");
    auto t0 = std::chrono::steady_clock::now();
    control::Reply reply = ctl->freeze(o.timeoutSeconds);
    times.mark("park");
    resources::ProcPageSource memory(realPid);
    if (reply.blockSize != sizeof(control::Block)) {
      image::fail(kj::str("process ", o.pid, " runs an incompatible libmig (block size ", reply.blockSize, ")"));
    }
    auto block = kj::heap<control::Block>();
    memory.read(reply.blockAddr, block.get(), sizeof(control::Block));
    auto regions = memory.regions();
    takeWrites(tracker, regions, held, untracked, current);
    times.mark("written-scan");
    // Private mappings saved whole (a restored job's memory, mapped from its image):
    // after MADV_DONTNEED the file's page shows through without a write the tracker
    // sees, so they are saved whole again each time rather than held.
    for (const auto& r : regions) {
      if (r.saveWhole) held.remove(r.start, r.end);
    }
    times.mark("held");
    char nameBuf[32];
    snprintf(nameBuf, sizeof(nameBuf), "ckpt-%04u.mig", number);
    auto name = kj::str(nameBuf);
    auto path = kj::str(o.dir, "/", name);
    image::AtomicFile file(path);
    capnp::MallocMessageBuilder header;
    resources::fillJobHeader(header.initRoot<image::schema::Header>(), realPid, block->vpid);
    image::ImageWriter w(file.sink(), header);
    if (parent.size() > 0) w.section(image::SectionType::parent, *parentSection);
    resources::CaptureStats stats{};
    resources::CaptureOptions options;
    options.maxDeletedFileBytes = o.maxDeletedFileBytes;
    resources::captureProcessState(realPid, *block, w, stats, options);
    times.mark("state");
    resources::PageRangeSet inImage;
    const resources::PageRangeSet* heldPtr = parent.size() > 0 ? &held : nullptr;
    resources::FrozenCopy pages(memory, heldPtr, limit, store, &current);
    times.mark("copy");
    auto since = [&] {
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    };
    double frozenMs = 0;
    if (pages.copied()) {
      // The tracker was re-armed by collect(): what the job writes from here on is the
      // next image's.
      ctl->resume();
      frozenMs = since();
      times.mark("resume");
    }
    writeMemory(pages, w, stats, heldPtr, &inImage);
    w.finish();
    file.commit();
    if (!pages.copied()) {
      ctl->resume();
      frozenMs = since();
    }
    times.mark(pages.copied() ? "written" : "written-frozen");
    times.write();
    parentSection = kj::heap<capnp::MallocMessageBuilder>();
    {
      image::FileReader reader(path);
      image::describeParent(reader, name, parentSection->initRoot<image::schema::Parent>());
    }
    double totalMs = since();
    uint64_t kept = 0;  // pages the image takes from its chain
    for (auto& r : held.ranges()) {
      kj::Vector<PageSpan> in;
      inImage.split(r.first, r.second, &in, nullptr);
      for (auto& s : in) kept += s.pages;
    }
    auto what = parent.size() > 0
        ? kj::str(inImage.pages() - kept, " pages written since ", parent, ", ", kept, " kept from the chain")
        : kj::str("whole, ", inImage.pages(), " pages");
    auto how = pages.copied()
        ? kj::str("written in ", static_cast<long>(totalMs + 0.5), " ms, the job running (",
                  pages.copiedFrozen() >> 10, " KiB copied frozen)")
        : kj::str("written frozen (", pages.bytes() >> 20, " MiB of pages, over the copy limit: half the memory available",
                  " or MIG_CHAIN_COPY_LIMIT_MIB)");
    printf("image %ld of process %ld: %s, %.1f MiB, %s; %s; frozen %.1f ms\n", k, static_cast<long>(o.pid),
           path.cStr(), static_cast<double>(w.bytesWritten()) / (1 << 20), what.cStr(), how.cStr(), frozenMs);
    fflush(stdout);
    chain = kj::mv(inImage);
    parent = kj::mv(name);
    ++number;
    if (o.count > 0 && k >= o.count) return 0;
    struct pollfd pfd = {pidfd, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(o.everySeconds * 1000 + 0.5)) > 0) {
      printf("process %ld ended; the chain is in %s\n", static_cast<long>(o.pid), o.dir.cStr());
      return 0;
    }
  }
}

}  // namespace mig::migctl
