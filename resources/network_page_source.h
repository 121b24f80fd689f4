// Post-copy migration's memory (issue 14): the job runs on the destination before its
// big private anonymous regions arrived. The sender leaves their pages out of the
// image and lists them in a postcopyPages section (15); the destination's restart makes
// them lazy pages (lazy_pages.h) whose source is the network instead of the image file:
// its page server asks for each range, a faulting page first, the rest in the
// background, over a socket to its shadowd, which fetches them from the sender
// (rsc/mig.capnp PageSource) while the job at home stays frozen with every page.
#pragma once

#include "image/file_reader.h"
#include "image/plan_builder.h"
#include "image/writer.h"
#include "resources/page_source.h"

#include <kj/array.h>
#include <kj/vector.h>

#include <cstdint>
#include <sys/types.h>

namespace mig::resources {

// Regions with less than this much to send go in the image: a fault round trip home per
// page would cost more than sending them while frozen (the same rule as lazy restarts).
constexpr uint64_t kPostcopyMinBytes = 1u << 20;

// A region of the job's address space, [start, end).
struct RegionSpan {
  uint64_t start, end;
};

// Looked at before the freeze, the job running (issue 14): its big private anonymous
// regions of which at least half the pages are present (or swapped) now. At the freeze
// PostcopySource lists each of them whole instead of walking its pages (the walk of
// 1 GiB, 4-13 ms, was most of a post-copy freeze): a page of such a region that home
// never had is a zero page, which the sender reads as such, so whole is as exact as
// walked; what it costs is the zero pages sent after the release, at most as many as
// present ones (the half). Empty where the maps or the pages cannot be read (a hint).
kj::Array<RegionSpan> densePostcopyRegions(PageSource& maps, pid_t pid);

// The sender's view of the frozen job for a post-copy image: every region as `inner`
// says, but the pages of big private anonymous regions are listed in remote() instead of
// being saved.
class PostcopySource final : public PageSource {
 public:
  // `pid`: the frozen job, whose present pages of those regions are found with one
  // PAGEMAP_SCAN walk (runs, not an entry per page: the freeze is shorter); 0 or a
  // kernel without it: `inner` says. `dense` (densePostcopyRegions): regions listed
  // whole, unwalked, where one with the same bounds is there at the freeze.
  explicit PostcopySource(PageSource& inner, pid_t pid = 0, kj::Array<RegionSpan> dense = nullptr);
  ~PostcopySource() noexcept(false) override;
  kj::Array<MappedRegion> regions() override;
  void pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) override;
  // Reads the regions and walks their pages now, so that a second thread can do it
  // while the first captures the rest of the frozen job's state (the walk of a 1 GiB
  // region is most of a post-copy freeze, issue 14); regions() and pagesToSave() then
  // answer from what it found. Not thread-safe against them: join before using them.
  void prefetch();
  void read(uint64_t addr, void* buf, size_t len) override { inner_.read(addr, buf, len); }

  kj::ArrayPtr<const PageSpan> remote() const { return remote_; }
  uint64_t remoteBytes() const { return remoteBytes_; }

 private:
  void walk(const MappedRegion& r, kj::Vector<PageSpan>& out);  // the pages to save, or remote_
  PageSource& inner_;
  int pagemap_ = -1;
  kj::Array<RegionSpan> dense_;
  struct Found {
    uint64_t start, end;
    kj::Vector<PageSpan> spans;  // as pagesToSave would add them
  };
  kj::Maybe<kj::Array<MappedRegion>> regions_;  // prefetched, until regions() takes it
  kj::Vector<Found> found_;
  size_t next_ = 0;
  kj::Vector<PageSpan> remote_;
  uint64_t remoteBytes_ = 0;
};

// The postcopyPages section (before the image's end) listing `runs`.
void writePostcopyPages(image::ImageWriter& w, kj::ArrayPtr<const PageSpan> runs);

// The runs of the image's postcopyPages section; empty without one.
kj::Array<PageSpan> postcopyPages(image::FileReader& img);

// The plan with each run as kPagesLazy pages of the region holding it (the plan builder
// saw no pages there: a zero region), whose imageOffset is the run's address at home. Throws when a run lies in no private anonymous
// region of the plan.
image::RestorePlan addRemotePages(const image::RestorePlan& plan, kj::ArrayPtr<const PageSpan> runs);

// The page server's requests to its shadowd and the answers, on the hop's gate socket
// once the job is released ('G'): one at a time, a request answered before the next.
struct PageRequest {
  uint64_t addr;  // the pages' address at home (the job may have moved them since)
  uint64_t len;  // 0: the server needs no more pages (all placed, or the job is gone)
};
struct PageReply {
  uint64_t addr;
  uint64_t len;       // status 0: this many bytes of page data follow
  int32_t status;     // 0, or 1: `textLen` bytes follow saying why no pages come
  uint32_t textLen;
};
constexpr uint64_t kMaxPageRequest = 4u << 20;

}  // namespace mig::resources
