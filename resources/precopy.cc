// See precopy.h.
#include "resources/precopy.h"

#include "image/image_error.h"

#include <capnp/message.h>

#include <algorithm>
#include <cstring>
#include <sys/uio.h>

namespace mig::resources {
namespace {

constexpr uint64_t kPage = 4096;
constexpr size_t kCopyChunk = 4u << 20;

// The part [start, end) of `r`, to ask the page source about only that part.
MappedRegion narrowed(const MappedRegion& r, uint64_t start, uint64_t end) {
  MappedRegion n{};
  n.start = start;
  n.end = end;
  n.prot = r.prot;
  n.flags = r.flags;
  n.kind = r.kind;
  n.path = kj::heapString(r.path);
  n.offset = r.offset + (start - r.start);
  n.inode = r.inode;
  n.saveWhole = r.saveWhole;
  return n;
}

}  // namespace

bool PrecopyRule::freezeNow(kj::ArrayPtr<const uint64_t> roundPages) const {
  if (roundPages.size() == 0) return false;
  uint64_t last = roundPages.back();
  if (last <= smallPages || roundPages.size() >= maxRounds) return true;
  if (roundPages.size() >= 2) {
    uint64_t before = roundPages[roundPages.size() - 2];
    if (last * 100 > before * shrinkPercent) return true;
  }
  return false;
}

Precopy::Precopy(pid_t pid, int uffd, PageSource& source) : pid_(pid), source_(source), tracker_(pid, uffd) {}

void Precopy::look(kj::Array<MappedRegion>& regions, PageRangeSet& written) {
  regions = source_.regions();
  PageRangeSet untracked;
  tracker_.collect(regions, written, untracked);
  for (auto& r : written.ranges()) {
    kj::Vector<PageSpan> rewritten;
    held_.split(r.first, r.second, &rewritten, nullptr);
    for (auto& s : rewritten) stats_.pagesRewritten += s.pages;
    held_.remove(r.first, r.second);
  }
  for (auto& r : untracked.ranges()) held_.remove(r.first, r.second);
}

uint64_t Precopy::sendRound(image::ImageWriter& w, kj::ArrayPtr<const MappedRegion> regions,
                            const PageRangeSet& written) {
  kj::Vector<PageSpan> spans;
  for (const MappedRegion& r : regions) {
    if (!trackable(r)) continue;
    kj::Vector<PageSpan> parts;
    written.split(r.start, r.end, &parts, nullptr);
    for (const PageSpan& p : parts) source_.pagesToSave(narrowed(r, p.addr, p.addr + p.pages * kPage), spans);
  }
  uint64_t total = 0;
  for (const PageSpan& s : spans) total += s.pages;
  if (total == 0) return 0;
  capnp::MallocMessageBuilder msg;
  auto meta = msg.initRoot<image::schema::Pages>();
  meta.setPrecopyRound(stats_.rounds + 1);
  auto runs = meta.initRuns(spans.size());
  for (size_t i = 0; i < spans.size(); ++i) {
    runs[i].setAddr(spans[i].addr);
    runs[i].setPages(static_cast<uint32_t>(spans[i].pages));
  }
  w.beginData(image::SectionType::pages, msg, total * kPage);
  auto buf = kj::heapArray<kj::byte>(kCopyChunk);
  for (const PageSpan& s : spans) {
    uint64_t left = s.pages * kPage;
    for (uint64_t addr = s.addr; left > 0;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
      // The job runs: a region may be unmapped under us. What cannot be read is sent
      // as zeros and not counted as held, so the freeze sends it (or drops it).
      struct iovec local = {buf.begin(), n}, remote = {reinterpret_cast<void*>(addr), n};
      ssize_t got = process_vm_readv(pid_, &local, 1, &remote, 1, 0);
      size_t good = got > 0 ? static_cast<size_t>(got) / kPage * kPage : 0;
      if (good < n) memset(buf.begin() + good, 0, n - good);
      held_.add(addr, addr + good);
      w.data(buf.begin(), n);
      addr += n;
      left -= n;
    }
  }
  w.endData();
  stats_.pagesSent += total;
  return total;
}

void Precopy::runRounds(image::ImageWriter& w, const PrecopyRule& rule, kj::Function<void()> afterRound) {
  kj::Vector<uint64_t> roundPages;
  do {
    kj::Array<MappedRegion> regions;
    PageRangeSet written;
    look(regions, written);
    roundPages.add(sendRound(w, regions, written));
    ++stats_.rounds;
    afterRound();
  } while (!rule.freezeNow(roundPages.asPtr()));
}

void Precopy::finalScan() {
  kj::Array<MappedRegion> regions;
  PageRangeSet written;
  look(regions, written);
}

}  // namespace mig::resources
