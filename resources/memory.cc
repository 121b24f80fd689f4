// See memory.h.
#include "resources/memory.h"

#include "image/checksum.h"
#include "image/image_error.h"
#include "resources/dirty_pages.h"

#include <capnp/message.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/stat.h>

namespace mig::resources {
namespace {

constexpr uint64_t kPage = 4096;
constexpr size_t kCopyChunk = 4u << 20;
// Pages sections this big get a pageSums section (image/format.h), for lazy restarts
// (resources/lazy_pages.h makes regions of 1 MiB or more lazy).
constexpr uint64_t kPageSumsMinBytes = 1u << 20;

}  // namespace

void writeMemory(PageSource& memory, image::ImageWriter& w, CaptureStats& stats, const PageRangeSet* held) {
  kj::Array<MappedRegion> regions = memory.regions();
  capnp::MallocMessageBuilder mapMsg;
  auto list = mapMsg.initRoot<image::schema::MemoryMap>().initRegions(regions.size());
  for (size_t i = 0; i < regions.size(); ++i) {
    const MappedRegion& r = regions[i];
    auto out = list[i];
    out.setStart(r.start);
    out.setEnd(r.end);
    out.setProt(r.prot);
    out.setFlags(r.flags);
    out.setKind(r.kind);
    out.setPath(r.path);
    out.setFileOffset(r.offset);
    out.setInode(r.inode);
    if (r.kind == image::schema::MemoryRegion::Kind::FILE) {
      struct stat st {};
      if (stat(r.path.cStr(), &st) == 0) {
        out.setDevice(st.st_dev);
        out.setFileSize(static_cast<uint64_t>(st.st_size));
        out.setMtimeNs(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec);
      }
    }
  }
  w.section(image::SectionType::memoryMap, mapMsg);

  auto buf = kj::heapArray<kj::byte>(kCopyChunk);
  kj::Vector<PageSpan> kept;
  for (const MappedRegion& r : regions) {
    kj::Vector<PageSpan> spans;
    if (held != nullptr && r.saveWhole) {
      // Saved whole means read whole, to leave out zero pages: not the held ones, which
      // were not zero when sent and have not changed since (precopy.h).
      kj::Vector<PageSpan> rest;
      held->split(r.start, r.end, &kept, &rest);
      for (const PageSpan& s : rest) memory.pagesToSave(partOf(r, s.addr, s.addr + s.pages * kPage), spans);
    } else {
      memory.pagesToSave(r, spans);
    }
    if (held != nullptr && !r.saveWhole) {
      kj::Vector<PageSpan> changed;
      for (const PageSpan& s : spans) held->split(s.addr, s.addr + s.pages * kPage, &kept, &changed);
      spans = kj::mv(changed);
    }
    if (spans.empty()) continue;
    capnp::MallocMessageBuilder pagesMsg;
    auto runs = pagesMsg.initRoot<image::schema::Pages>().initRuns(spans.size());
    uint64_t total = 0;
    for (size_t i = 0; i < spans.size(); ++i) {
      runs[i].setAddr(spans[i].addr);
      runs[i].setPages(static_cast<uint32_t>(spans[i].pages));
      total += spans[i].pages * kPage;
    }
    w.beginData(image::SectionType::pages, pagesMsg, total);
    kj::Vector<uint64_t> sums;
    const bool withSums = total >= kPageSumsMinBytes;
    for (const PageSpan& s : spans) {
      uint64_t left = s.pages * kPage;
      for (uint64_t addr = s.addr; left > 0;) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
        memory.read(addr, buf.begin(), n);
        w.data(buf.begin(), n);
        for (size_t o = 0; withSums && o < n; o += kPage) sums.add(image::checksum(buf.begin() + o, kPage));
        addr += n;
        left -= n;
      }
    }
    w.endData();
    if (withSums) {
      w.beginData(image::SectionType::pageSums, pagesMsg, sums.size() * sizeof(uint64_t));
      w.data(sums.begin(), sums.size() * sizeof(uint64_t));
      w.endData();
    }
    stats.savedPages += total / kPage;
  }
  if (!kept.empty()) {
    capnp::MallocMessageBuilder keptMsg;
    auto runs = keptMsg.initRoot<image::schema::Pages>().initRuns(kept.size());
    for (size_t i = 0; i < kept.size(); ++i) {
      runs[i].setAddr(kept[i].addr);
      runs[i].setPages(static_cast<uint32_t>(kept[i].pages));
      stats.savedPages += kept[i].pages;
    }
    w.section(image::SectionType::keptPages, keptMsg);
  }
}

// Refuses an image whose code would not be the same: every mapped file must still be
// the file that was mapped.
void checkMappedFiles(image::FileReader& img, bool migrated) {
  for (size_t i = 0; i < img.sectionCount(); ++i) {
    if (img.section(i).type != static_cast<uint16_t>(image::SectionType::memoryMap)) continue;
    for (auto r : img.meta<image::schema::MemoryMap>(i).getRegions()) {
      if (r.getKind() != image::schema::MemoryRegion::Kind::FILE) continue;
      struct stat st {};
      if (stat(r.getPath().cStr(), &st) != 0) {
        image::fail(kj::str("mapped file ", r.getPath(), " is missing (", strerror(errno), "); cannot restart"));
      }
      int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
      if ((!migrated && st.st_ino != r.getInode()) || static_cast<uint64_t>(st.st_size) != r.getFileSize() ||
          mtime != r.getMtimeNs()) {
        image::fail(kj::str("mapped file ", r.getPath(), " changed since the checkpoint; cannot restart"));
      }
    }
  }
}

}  // namespace mig::resources
