// See precopy.h.
#include "resources/precopy.h"

#include "image/checksum.h"
#include "image/image_error.h"
#include "resources/proc_file.h"
#include "resources/process_tree.h"

#include <capnp/message.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <csignal>
#include <fcntl.h>
#include <unistd.h>
#include <sys/uio.h>

namespace mig::resources {
namespace {

constexpr uint64_t kPage = 4096;
constexpr size_t kCopyChunk = 4u << 20;
// Rounds this big get a pageSums section, as resources/memory.cc's sections do.
constexpr uint64_t kPageSumsMinBytes = 1u << 20;

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

Precopy::Precopy(pid_t pid, int uffd, PageSource& source) : pid_(pid), source_(source), tracker_(pid, uffd) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
  pagemap_ = ::open(path, O_RDONLY | O_CLOEXEC);
  if (pagemap_ < 0) image::fail(kj::str("cannot open ", path, ": ", strerror(errno)));
  programMark_ = programMark();
}

kj::Array<kj::byte> Precopy::programMark() {
  constexpr uint64_t kAtRandom = 25;
  std::string auxv;
  if (!readProcFileIfExists(pid_, "auxv", auxv)) image::fail(kj::str("cannot read the auxiliary vector of process ", pid_));
  uint64_t at = 0;
  for (size_t i = 0; i + 16 <= auxv.size(); i += 16) {
    uint64_t key, value;
    memcpy(&key, auxv.data() + i, 8);
    memcpy(&value, auxv.data() + i + 8, 8);
    if (key == kAtRandom) at = value;
  }
  auto mark = kj::heapArray<kj::byte>(24);
  memcpy(mark.begin(), &at, 8);
  memset(mark.begin() + 8, 0, 16);
  struct iovec local = {mark.begin() + 8, 16}, remote = {reinterpret_cast<void*>(at), 16};
  if (at != 0) (void)process_vm_readv(pid_, &local, 1, &remote, 1, 0);
  return mark;
}

Precopy::~Precopy() { ::close(pagemap_); }

// Calls f(addr, isFilePage) for each page of [start, end): whether the page shows the
// mapped file's contents (not a private copy: neither present as one nor swapped).
template <typename F>
static void forEachPageKind(int pagemap, pid_t pid, uint64_t start, uint64_t end, F&& f) {
  constexpr uint64_t kPresent = 1ull << 63, kSwapped = 1ull << 62, kFilePage = 1ull << 61;
  constexpr uint64_t kChunk = 4096;
  uint64_t entries[kChunk];
  for (uint64_t at = start; at < end;) {
    uint64_t n = std::min(kChunk, (end - at) / kPage);
    ssize_t got = pread(pagemap, entries, n * sizeof(uint64_t), static_cast<off_t>(at / kPage * sizeof(uint64_t)));
    if (got != static_cast<ssize_t>(n * sizeof(uint64_t))) {
      image::fail(kj::str("cannot read the page map of process ", pid, ": ", strerror(errno)));
    }
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t e = entries[i];
      bool privateCopy = (e & kSwapped) || ((e & kPresent) && !(e & kFilePage));
      f(at + i * kPage, !privateCopy);
    }
    at += n * kPage;
  }
}

void Precopy::markFilePages(uint64_t start, uint64_t end) {
  forEachPageKind(pagemap_, pid_, start, end, [&](uint64_t addr, bool file) {
    if (file) heldFile_.add(addr, addr + kPage);
    else heldFile_.remove(addr, addr + kPage);
  });
}

void Precopy::dropChangedKind(const MappedRegion& r) {
  kj::Vector<PageSpan> heldHere;
  held_.split(r.start, r.end, &heldHere, nullptr);
  for (const PageSpan& s : heldHere) {
    forEachPageKind(pagemap_, pid_, s.addr, s.addr + s.pages * kPage, [&](uint64_t addr, bool file) {
      kj::Vector<PageSpan> wasFile;
      heldFile_.split(addr, addr + kPage, &wasFile, nullptr);
      if (file != !wasFile.empty()) forget(addr, addr + kPage);
    });
  }
}

void Precopy::look(kj::Array<MappedRegion>& regions, PageRangeSet& written) {
  if (kill(pid_, 0) != 0 && errno == ESRCH) image::fail(kj::str("process ", pid_, " ended during the pre-copy"));
  regions = source_.regions();
  PageRangeSet untracked;
  tracker_.collect(regions, written, untracked);
  for (auto& r : written.ranges()) {
    kj::Vector<PageSpan> rewritten;
    held_.split(r.first, r.second, &rewritten, nullptr);
    for (auto& s : rewritten) stats_.pagesRewritten += s.pages;
    forget(r.first, r.second);
  }
  for (auto& r : untracked.ranges()) forget(r.first, r.second);
}

uint64_t Precopy::sendRound(image::ImageWriter& w, kj::ArrayPtr<const MappedRegion> regions,
                            const PageRangeSet& written) {
  kj::Vector<PageSpan> spans;
  for (const MappedRegion& r : regions) {
    if (!trackable(r)) continue;
    kj::Vector<PageSpan> parts;
    written.split(r.start, r.end, &parts, nullptr);
    size_t before = spans.size();
    for (const PageSpan& p : parts) source_.pagesToSave(partOf(r, p.addr, p.addr + p.pages * kPage), spans);
    // Read before the data: a page that becomes a private copy in between was written,
    // and the next look says so.
    if (r.saveWhole) {
      for (size_t i = before; i < spans.size(); ++i) {
        markFilePages(spans[i].addr, spans[i].addr + spans[i].pages * kPage);
      }
    }
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
  // One checksum per page, as a checkpoint's big pages sections have (resources/memory.cc):
  // without them a lazy restore's page server hashes the whole section at its first
  // fault, inside the hop's freeze (~60 ms for a 1 GiB round).
  const bool sums = total * kPage >= kPageSumsMinBytes;
  kj::Array<uint64_t> pageSums = kj::heapArray<uint64_t>(sums ? total : 0);
  size_t summed = 0;
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
      for (size_t k = 0; sums && k < n / kPage; ++k) pageSums[summed++] = image::checksum(buf.begin() + k * kPage, kPage);
      addr += n;
      left -= n;
    }
  }
  w.endData();
  if (sums) {
    w.beginData(image::SectionType::pageSums, msg, total * sizeof(uint64_t));
    w.data(pageSums.begin(), total * sizeof(uint64_t));
    w.endData();
  }
  stats_.pagesSent += total;
  return total;
}

void Precopy::runRounds(image::ImageWriter& w, const PrecopyRule& rule, kj::Function<void()> afterRound) {
  kj::Vector<uint64_t> roundPages;
  do {
    roundPages.add(round(w));
    afterRound();
  } while (!rule.freezeNow(roundPages.asPtr()));
}

uint64_t Precopy::round(image::ImageWriter& w) {
  kj::Array<MappedRegion> regions;
  PageRangeSet written;
  look(regions, written);
  uint64_t sent = sendRound(w, regions, written);
  ++stats_.rounds;
  return sent;
}

uint32_t runRoundsTogether(kj::ArrayPtr<PrecopyMember> members, const PrecopyRule& rule,
                           kj::Function<void(size_t member)> afterRound) {
  kj::Vector<uint64_t> roundPages;
  do {
    uint64_t pages = 0;
    for (size_t i = 0; i < members.size(); ++i) {
      auto& m = members[i];
      if (m.ended) continue;
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { pages += m.precopy.round(m.w); })) {
        if (!m.mayEnd || processRuns(m.pid)) kj::throwFatalException(kj::mv(*e));
        m.ended = true;
        continue;
      }
      afterRound(i);
    }
    roundPages.add(pages);
  } while (!rule.freezeNow(roundPages.asPtr()));
  return static_cast<uint32_t>(roundPages.size());
}

void Precopy::finalScan() {
  if (!(programMark().asPtr() == programMark_.asPtr())) {
    image::fail(kj::str("process ", pid_, " started another program during the pre-copy; migrate it again"));
  }
  kj::Array<MappedRegion> regions;
  PageRangeSet written;
  look(regions, written);
  for (const MappedRegion& r : regions) {
    if (r.saveWhole) dropChangedKind(r);
  }
}

}  // namespace mig::resources
