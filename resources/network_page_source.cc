// See network_page_source.h.
#include "resources/network_page_source.h"

#include "image/format.h"
#include "image/image_error.h"
#include "image/restore_plan.h"

#include "resources/dirty_pages.h"

#include <cstring>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace mig::resources {
namespace {

constexpr uint64_t kPage = 4096;

bool remoteKind(const MappedRegion& r) {
  using Kind = image::schema::MemoryRegion::Kind;
  // Private anonymous memory only (heap, mmaps, thread stacks); not the main stack
  // (it grows down: userfaultfd cannot follow it), not what the restorer maps from
  // files or shares.
  return (r.kind == Kind::ANONYMOUS || r.kind == Kind::HEAP) && !(r.flags & MAP_SHARED) && r.prot != PROT_NONE &&
         !r.saveWhole && r.path.size() == 0;
}

}  // namespace

kj::Array<RegionSpan> densePostcopyRegions(PageSource& maps, pid_t pid) {
  kj::Vector<RegionSpan> dense;
  int pagemap = ::open(kj::str("/proc/", pid, "/pagemap").cStr(), O_RDONLY | O_CLOEXEC);
  if (pagemap < 0) return nullptr;
  KJ_DEFER(::close(pagemap));
  for (const MappedRegion& r : maps.regions()) {
    if (!remoteKind(r) || r.end - r.start < kPostcopyMinBytes) continue;
    kj::Vector<PageSpan> spans;
    if (!scanPresent(pagemap, r.start, r.end, spans)) return nullptr;
    uint64_t bytes = 0;
    for (const PageSpan& s : spans) bytes += s.pages * kPage;
    if (bytes >= kPostcopyMinBytes && 2 * bytes >= r.end - r.start) dense.add(RegionSpan{r.start, r.end});
  }
  return dense.releaseAsArray();
}

PostcopySource::PostcopySource(PageSource& inner, pid_t pid, kj::Array<RegionSpan> dense)
    : inner_(inner), dense_(kj::mv(dense)) {
  if (pid > 0) pagemap_ = ::open(kj::str("/proc/", pid, "/pagemap").cStr(), O_RDONLY | O_CLOEXEC);
}

PostcopySource::~PostcopySource() noexcept(false) {
  if (pagemap_ >= 0) ::close(pagemap_);
}

kj::Array<MappedRegion> PostcopySource::regions() {
  KJ_IF_MAYBE(r, regions_) {
    auto taken = kj::mv(*r);
    regions_ = nullptr;
    return taken;
  }
  return inner_.regions();
}

void PostcopySource::prefetch() {
  auto regions = inner_.regions();
  for (const MappedRegion& r : regions) {
    found_.add(Found{r.start, r.end, {}});
    walk(r, found_.back().spans);
  }
  regions_ = kj::mv(regions);
}

void PostcopySource::pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) {
  // Asked in the order of regions(): the next one found, else a search.
  for (size_t k = 0; k < found_.size(); ++k) {
    Found& f = found_[(next_ + k) % found_.size()];
    if (f.start == r.start && f.end == r.end) {
      out.addAll(f.spans);
      next_ = (next_ + k + 1) % found_.size();
      return;
    }
  }
  walk(r, out);
}

void PostcopySource::walk(const MappedRegion& r, kj::Vector<PageSpan>& out) {
  if (remoteKind(r)) {
    for (const RegionSpan& d : dense_) {
      if (d.start != r.start || d.end != r.end) continue;
      remote_.add(PageSpan{r.start, (r.end - r.start) / kPage});
      remoteBytes_ += r.end - r.start;
      return;
    }
  }
  kj::Vector<PageSpan> spans;
  if (!remoteKind(r) || pagemap_ < 0 || !scanPresent(pagemap_, r.start, r.end, spans)) inner_.pagesToSave(r, spans);
  uint64_t bytes = 0;
  for (const PageSpan& s : spans) bytes += s.pages * kPage;
  if (!remoteKind(r) || bytes < kPostcopyMinBytes) {
    out.addAll(spans);
    return;
  }
  remote_.addAll(spans);
  remoteBytes_ += bytes;
}

void writePostcopyPages(image::ImageWriter& w, kj::ArrayPtr<const PageSpan> runs) {
  if (runs.size() == 0) return;
  capnp::MallocMessageBuilder msg;
  auto list = msg.initRoot<image::schema::Pages>().initRuns(static_cast<unsigned>(runs.size()));
  for (size_t i = 0; i < runs.size(); ++i) {
    list[i].setAddr(runs[i].addr);
    list[i].setPages(static_cast<uint32_t>(runs[i].pages));
  }
  w.section(image::SectionType::postcopyPages, msg);
}

kj::Array<PageSpan> postcopyPages(image::FileReader& img) {
  kj::Vector<PageSpan> runs;
  for (size_t i = 0; i < img.sectionCount(); ++i) {
    if (img.section(i).type != static_cast<uint16_t>(image::SectionType::postcopyPages)) continue;
    for (auto run : img.meta<image::schema::Pages>(i).getRuns()) runs.add(PageSpan{run.getAddr(), run.getPages()});
  }
  return runs.releaseAsArray();
}

image::RestorePlan addRemotePages(const image::RestorePlan& plan, kj::ArrayPtr<const PageSpan> runs) {
  const plan::Header& h = plan.header();
  const plan::Region* regions = plan::regions(&h);
  kj::Vector<plan::Pages> added;
  for (const PageSpan& s : runs) {
    uint64_t end = s.addr + s.pages * kPage;
    uint32_t found = UINT32_MAX;
    for (uint32_t i = 0; i < h.regionCount; ++i) {
      if (regions[i].start <= s.addr && end <= regions[i].end) found = i;
    }
    if (found == UINT32_MAX || regions[found].source != plan::kSourceZero || (regions[found].mapFlags & MAP_SHARED)) {
      image::fail(kj::str("post-copy pages ", kj::hex(s.addr), "-", kj::hex(end),
                          " lie in no private anonymous region of the image"));
    }
    // imageOffset holds the pages' address at home: the page server asks by it, also
    // for pages the job has moved (mremap) since.
    added.add(plan::Pages{s.addr, s.pages * kPage, s.addr, found, plan::kPagesLazy});
  }
  // The old plan as it is, then the whole Pages array again (old entries and new) at
  // its end: the plan's parts are found by offsets from its header.
  const uint64_t oldSize = (h.totalSize + 7) & ~uint64_t{7};
  const uint64_t oldPagesBytes = uint64_t{h.pagesCount} * sizeof(plan::Pages);
  const uint64_t total = oldSize + oldPagesBytes + added.size() * sizeof(plan::Pages);
  auto storage = kj::heapArray<uint64_t>((total + 7) / 8);
  memset(storage.begin(), 0, storage.size() * 8);
  auto* base = reinterpret_cast<char*>(storage.begin());
  memcpy(base, &h, h.totalSize);
  memcpy(base + oldSize, plan::pages(&h), oldPagesBytes);
  memcpy(base + oldSize + oldPagesBytes, added.begin(), added.size() * sizeof(plan::Pages));
  auto* nh = reinterpret_cast<plan::Header*>(base);
  nh->pages = oldSize;
  nh->pagesCount = h.pagesCount + static_cast<uint32_t>(added.size());
  nh->totalSize = total;
  return image::RestorePlan(kj::mv(storage));
}

}  // namespace mig::resources
