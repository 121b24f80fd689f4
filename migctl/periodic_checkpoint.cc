// See periodic_checkpoint.h. The first image of a run is whole; the pages the process
// writes after it are tracked as for pre-copy (resources/dirty_pages.h: the job's
// userfaultfd in asynchronous write-protect mode, PAGEMAP_SCAN), and each later image
// holds only those, with a keptPages section for the rest of what the chain holds. The
// process is frozen while its state is taken and the image's pages are copied into
// migctl's memory (resources::FrozenCopy: a memory copy, not a file write and sync),
// then runs while they are written; an image is complete in DIR once it is renamed into
// place, so a chain is restartable from every image written.
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
    resources::growFrozenCopyBuffer(realPid, resources::frozenCopyLimit(), copyBuffer);
    // Where an image's freeze goes, one line per image in $MIG_HOP_TIMES (bench/chain_bench.sh).
    shadow::HopTimes times(kj::str("chain image ", k));
    times.mark("freeze");
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
    resources::PageRangeSet written, untracked;
    tracker.collect(regions, written, untracked);
    times.mark("written-scan");
    resources::PageRangeSet held;  // in the chain and not written since
    if (parent.size() > 0) {
      held = kj::mv(chain);  // set anew from the image below: not copied inside the freeze
      for (auto& r : written.ranges()) held.remove(r.first, r.second);
      for (auto& r : untracked.ranges()) held.remove(r.first, r.second);
      // Private mappings saved whole (a restored job's memory, mapped from its image):
      // after MADV_DONTNEED the file's page shows through without a write the tracker
      // sees, so they are saved whole again each time rather than held.
      for (const auto& r : regions) {
        if (r.saveWhole) held.remove(r.start, r.end);
      }
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
    resources::FrozenCopy pages(memory, heldPtr, resources::frozenCopyLimit(), copyBuffer);
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
      image::FileReader written(path);
      image::describeParent(written, name, parentSection->initRoot<image::schema::Parent>());
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
        ? kj::str("written in ", static_cast<long>(totalMs + 0.5), " ms, the job running")
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
