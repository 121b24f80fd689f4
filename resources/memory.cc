// See memory.h.
#include "resources/memory.h"

#include "image/checksum.h"
#include "image/image_error.h"
#include "resources/dirty_pages.h"

#include <capnp/message.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/mman.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mig::resources {
namespace {

constexpr uint64_t kPage = 4096;
constexpr size_t kCopyChunk = 4u << 20;
// Pages sections this big get a pageSums section (image/format.h), for lazy restarts
// (resources/lazy_pages.h makes regions of 1 MiB or more lazy).
constexpr uint64_t kPageSumsMinBytes = 1u << 20;

// Whether a page of `r` left out of the image comes back as zeros: anonymous memory
// (and what is saved as such), not a private file mapping, whose file would show.
bool restoresAsZero(const MappedRegion& r) {
  using K = image::schema::MemoryRegion::Kind;
  return r.saveWhole || r.flags == MAP_SHARED || r.kind == K::ANONYMOUS || r.kind == K::HEAP || r.kind == K::STACK;
}

bool zeroPage(const kj::byte* p) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < kPage / sizeof(uint64_t); ++i) {
    if (w[i] != 0) return false;
  }
  return true;
}

// Gathers saved pages, of any number of regions, into pages sections of up to
// kCopyChunk bytes: a small job's image is one section (each costs its 4 KiB-aligned
// data start), a large one's sections are 4 MiB. Pages that read as zero where a page
// left out comes back as zero (restoresAsZero) are left out: touched but never
// written, or written with zeros (calloc, the shim's tables).
class PageBatch {
 public:
  PageBatch(image::ImageWriter& w, CaptureStats& stats, PageRangeSet* saved)
      : w_(w), stats_(stats), saved_(saved), data_(kj::heapArray<kj::byte>(kCopyChunk)) {}

  // Reads span `s` (once: a concurrent checkpoint's source releases what it read).
  void add(PageSource& memory, const PageSpan& s, bool dropZeros) {
    uint64_t addr = s.addr, left = s.pages * kPage;
    while (left > 0) {
      if (used_ == data_.size()) flush();
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, data_.size() - used_));
      memory.read(addr, data_.begin() + used_, n);
      for (size_t off = 0; off < n; off += kPage) {
        const kj::byte* page = data_.begin() + used_ + off;
        if (dropZeros && zeroPage(page)) continue;
        if (page != data_.begin() + kept_) memmove(data_.begin() + kept_, page, kPage);
        uint64_t at = addr + off;
        if (!runs_.empty() && runs_.back().addr + runs_.back().pages * kPage == at) {
          ++runs_.back().pages;
        } else {
          runs_.add(PageSpan{at, 1});
        }
        kept_ += kPage;
      }
      used_ = kept_;
      addr += n;
      left -= n;
    }
  }

  void flush() {
    if (runs_.empty()) return;
    capnp::MallocMessageBuilder pagesMsg;
    auto runs = pagesMsg.initRoot<image::schema::Pages>().initRuns(static_cast<unsigned>(runs_.size()));
    for (size_t i = 0; i < runs_.size(); ++i) {
      runs[static_cast<unsigned>(i)].setAddr(runs_[i].addr);
      runs[static_cast<unsigned>(i)].setPages(static_cast<uint32_t>(runs_[i].pages));
      if (saved_ != nullptr) saved_->add(runs_[i].addr, runs_[i].addr + runs_[i].pages * kPage);
    }
    w_.beginData(image::SectionType::pages, pagesMsg, kept_);
    w_.data(data_.begin(), kept_);
    w_.endData();
    if (kept_ >= kPageSumsMinBytes) {
      // One checksum per page, in the section's order, for a lazy restart's page server.
      kj::Array<uint64_t> sums = kj::heapArray<uint64_t>(kept_ / kPage);
      for (size_t i = 0; i < sums.size(); ++i) sums[i] = image::checksum(data_.begin() + i * kPage, kPage);
      w_.beginData(image::SectionType::pageSums, pagesMsg, sums.size() * sizeof(uint64_t));
      w_.data(sums.begin(), sums.size() * sizeof(uint64_t));
      w_.endData();
    }
    stats_.savedPages += kept_ / kPage;
    runs_.clear();
    used_ = kept_ = 0;
  }

 private:
  image::ImageWriter& w_;
  CaptureStats& stats_;
  PageRangeSet* saved_;
  kj::Array<kj::byte> data_;
  size_t used_ = 0;  // read into data_
  size_t kept_ = 0;  // of those, the pages kept (zero pages squeezed out)
  kj::Vector<PageSpan> runs_;
};

// Saved runs shorter than this go into sparsePages sections (image/format.h): a
// restart copies such runs anyway (mig-restore maps only runs of 64 KiB or more), so
// storing only the bytes that differ from what the restart puts there costs it
// nothing, and a small job's image shrinks to a third. Longer runs stay whole pages,
// which a restart maps from the image and a lazy restart serves.
constexpr uint64_t kSparseMaxRun = 64 * 1024;
// Differing words closer than this are stored as one extent: each extent costs 16
// bytes of metadata, a plan entry and a pread at restart.
constexpr uint64_t kSparseGap = 64;
constexpr size_t kSparseSectionBytes = 4u << 20;

// Gathers short saved runs of private regions as extents: the 8-byte words of each
// page that differ from its page at restart (zeros in anonymous memory, the file's
// bytes in a private file mapping, read from the mapped file itself), nearby ones
// joined. A page equal to that is not saved at all (a copy-on-write page written back
// to the file's contents, a touched page of zeros).
class SparseBatch {
 public:
  SparseBatch(image::ImageWriter& w, CaptureStats& stats, PageRangeSet* saved)
      : w_(w), stats_(stats), saved_(saved), page_(kj::heapArray<kj::byte>(kSparseMaxRun)),
        base_(kj::heapArray<kj::byte>(kPage)) {}
  ~SparseBatch() noexcept(false) {
    if (fileFd_ >= 0) close(fileFd_);
  }

  // False (nothing read) if the bytes a restart would put there cannot be known: the
  // mapped file cannot be opened as the one mapped. The caller saves the span whole.
  bool add(PageSource& memory, const MappedRegion& r, const PageSpan& s) {
    if (s.pages * kPage >= kSparseMaxRun || r.flags != MAP_PRIVATE) return false;
    const bool fromFile = r.kind == image::schema::MemoryRegion::Kind::FILE;
    if (fromFile && !openFile(r)) return false;
    const size_t len = static_cast<size_t>(s.pages * kPage);
    memory.read(s.addr, page_.begin(), len);
    bool open = false;  // an extent is open: it may grow while in this span
    for (size_t off = 0; off < len; off += kPage) {
      const uint64_t addr = s.addr + off;
      const auto* mem = reinterpret_cast<const uint64_t*>(page_.begin() + off);
      const uint64_t* base = zeroBase();
      if (fromFile) base = fileBase(r, addr);
      bool saved = false;
      for (size_t i = 0; i < kPage / 8; ++i) {
        if (base != nullptr && mem[i] == base[i]) continue;
        saved = true;
        const uint64_t at = addr + i * 8;
        if (open && at - (extents_.back().addr + extents_.back().len) <= kSparseGap) {
          extents_.back().len = at + 8 - extents_.back().addr;
        } else {
          extents_.add(Extent{at, 8});
          open = true;
        }
      }
      if (!saved) {
        open = false;  // extents never reach into a page that is not saved
        continue;
      }
      if (!runs_.empty() && runs_.back().addr + runs_.back().pages * kPage == addr) {
        ++runs_.back().pages;
      } else {
        runs_.add(PageSpan{addr, 1});
      }
    }
    // The bytes of this span's new extents, taken from what was just read.
    for (size_t k = firstNew_; k < extents_.size(); ++k) {
      const Extent& e = extents_[k];
      data_.addAll(page_.begin() + (e.addr - s.addr), page_.begin() + (e.addr - s.addr) + e.len);
    }
    firstNew_ = extents_.size();
    if (data_.size() >= kSparseSectionBytes) flush();
    return true;
  }

  void flush() {
    if (runs_.empty()) return;
    capnp::MallocMessageBuilder msg;
    auto pages = msg.initRoot<image::schema::Pages>();
    auto runs = pages.initRuns(static_cast<unsigned>(runs_.size()));
    uint64_t count = 0;
    for (size_t i = 0; i < runs_.size(); ++i) {
      runs[static_cast<unsigned>(i)].setAddr(runs_[i].addr);
      runs[static_cast<unsigned>(i)].setPages(static_cast<uint32_t>(runs_[i].pages));
      count += runs_[i].pages;
      if (saved_ != nullptr) saved_->add(runs_[i].addr, runs_[i].addr + runs_[i].pages * kPage);
    }
    auto extents = pages.initExtents(static_cast<unsigned>(extents_.size()));
    for (size_t i = 0; i < extents_.size(); ++i) {
      extents[static_cast<unsigned>(i)].setAddr(extents_[i].addr);
      extents[static_cast<unsigned>(i)].setLen(static_cast<uint32_t>(extents_[i].len));
    }
    w_.beginData(image::SectionType::sparsePages, msg, data_.size());
    w_.data(data_.begin(), data_.size());
    w_.endData();
    stats_.savedPages += count;
    runs_.clear();
    extents_.clear();
    data_.clear();
    firstNew_ = 0;
  }

 private:
  struct Extent {
    uint64_t addr;
    uint64_t len;
  };

  static const uint64_t* zeroBase() {
    static const uint64_t zero[kPage / 8] = {};
    return zero;
  }

  // The file a private file mapping maps, checked to be the very file (its inode): a
  // restart maps it again, after checking it is still that file (checkMappedFiles).
  bool openFile(const MappedRegion& r) {
    if (fileFd_ >= 0 && fileInode_ == r.inode && filePath_ == r.path) return true;
    if (fileFd_ >= 0) close(fileFd_);
    fileFd_ = open(r.path.cStr(), O_RDONLY | O_CLOEXEC);
    if (fileFd_ < 0) return false;
    struct stat st {};
    if (fstat(fileFd_, &st) != 0 || st.st_ino != r.inode || r.inode == 0) {
      close(fileFd_);
      fileFd_ = -1;
      return false;
    }
    fileInode_ = r.inode;
    filePath_ = kj::str(r.path);
    return true;
  }

  // The file's page at `addr` as the mapping shows it (zeros past the end of the
  // file), or nullptr if it cannot be read: then the page is stored whole.
  const uint64_t* fileBase(const MappedRegion& r, uint64_t addr) {
    const off_t at = static_cast<off_t>(r.offset + (addr - r.start));
    size_t got = 0;
    while (got < kPage) {
      ssize_t n = pread(fileFd_, base_.begin() + got, kPage - got, at + static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return nullptr;
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    if (got < kPage) memset(base_.begin() + got, 0, kPage - got);
    return reinterpret_cast<const uint64_t*>(base_.begin());
  }

  image::ImageWriter& w_;
  CaptureStats& stats_;
  PageRangeSet* saved_;
  kj::Array<kj::byte> page_;
  kj::Array<kj::byte> base_;
  kj::Vector<kj::byte> data_;
  kj::Vector<Extent> extents_;
  size_t firstNew_ = 0;  // extents_ from here on belong to the span being added
  kj::Vector<PageSpan> runs_;
  int fileFd_ = -1;
  uint64_t fileInode_ = 0;
  kj::String filePath_;
};

}  // namespace

void writeMemory(PageSource& memory, image::ImageWriter& w, CaptureStats& stats, const PageRangeSet* held,
                 PageRangeSet* inImage, bool allowSparse) {
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

  PageBatch batch(w, stats, inImage);
  SparseBatch sparse(w, stats, inImage);
  // Not for pre-copy or a chain: their later pages go over earlier ones, which would
  // show through around a sparse page's extents.
  const bool sparseOk = allowSparse && held == nullptr && inImage == nullptr;
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
    const bool zeroIsAbsent = restoresAsZero(r);
    for (const PageSpan& s : spans) {
      if (sparseOk && sparse.add(memory, r, s)) continue;
      batch.add(memory, s, zeroIsAbsent);
    }
  }
  batch.flush();
  sparse.flush();
  if (!kept.empty()) {
    capnp::MallocMessageBuilder keptMsg;
    auto runs = keptMsg.initRoot<image::schema::Pages>().initRuns(kept.size());
    for (size_t i = 0; i < kept.size(); ++i) {
      runs[i].setAddr(kept[i].addr);
      runs[i].setPages(static_cast<uint32_t>(kept[i].pages));
      stats.savedPages += kept[i].pages;
      if (inImage != nullptr) inImage->add(kept[i].addr, kept[i].addr + kept[i].pages * kPage);
    }
    w.section(image::SectionType::keptPages, keptMsg);
  }
}

// Refuses an image whose code would not be the same: every mapped file must still be
// the file that was mapped.
void checkMappedFiles(image::FileReader& img, bool migrated) {
  bool haveStat = false;
  kj::StringPtr statted;  // the file `st` describes
  struct stat st {};
  for (size_t i = 0; i < img.sectionCount(); ++i) {
    if (img.section(i).type != static_cast<uint16_t>(image::SectionType::memoryMap)) continue;
    for (auto r : img.meta<image::schema::MemoryMap>(i).getRegions()) {
      if (r.getKind() != image::schema::MemoryRegion::Kind::FILE) continue;
      // A file's regions come one after another (a library has four or five): one stat.
      if (!haveStat || r.getPath() != statted) {
        if (stat(r.getPath().cStr(), &st) != 0) {
          image::fail(kj::str("mapped file ", r.getPath(), " is missing (", strerror(errno), "); cannot restart"));
        }
        statted = r.getPath();
        haveStat = true;
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
