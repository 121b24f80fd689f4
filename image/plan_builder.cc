// See plan_builder.h.
#include "image/plan_builder.h"

#include "image/image_error.h"
#include "image/plan_check.h"

#include <algorithm>
#include <map>
#include <kj/map.h>
#include <kj/vector.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <sys/mman.h>

namespace mig::image {
namespace {

// Sorted, merged [start, end) address ranges (pre-copy's page bookkeeping).
class Intervals {
 public:
  void add(uint64_t start, uint64_t end) {
    auto it = m_.upper_bound(start);
    if (it != m_.begin() && std::prev(it)->second >= start) {
      --it;
      if (it->second >= end) return;  // inside already (a pre-copy's later rounds, mostly)
    }
    while (it != m_.end() && it->first <= end) {
      start = std::min(start, it->first);
      end = std::max(end, it->second);
      it = m_.erase(it);
    }
    m_.emplace(start, end);
  }
  // Calls f(s, e) for each part of [start, end) inside the set, in order.
  template <typename F>
  void forEachIn(uint64_t start, uint64_t end, F&& f) const {
    auto it = m_.upper_bound(start);
    if (it != m_.begin()) --it;
    for (; it != m_.end() && it->first < end; ++it) {
      uint64_t s = std::max(start, it->first), e = std::min(end, it->second);
      if (s < e) f(s, e);
    }
  }
  bool covers(uint64_t start, uint64_t end) const {
    auto it = m_.upper_bound(start);
    return it != m_.begin() && std::prev(it)->first <= start && std::prev(it)->second >= end;
  }
  bool empty() const { return m_.empty(); }

 private:
  std::map<uint64_t, uint64_t> m_;
};

class StringTable {
 public:
  uint32_t add(kj::StringPtr s) {
    KJ_IF_MAYBE(existing, offsets_.find(s)) { return *existing; }
    uint32_t at = static_cast<uint32_t>(bytes_.size());
    bytes_.addAll(s.asArray());
    bytes_.add('\0');
    offsets_.insert(kj::heapString(s), at);
    return at;
  }
  kj::ArrayPtr<const char> bytes() const { return bytes_.asPtr(); }
  const char* at(uint32_t offset) const { return bytes_.begin() + offset; }

 private:
  kj::Vector<char> bytes_;
  kj::HashMap<kj::String, uint32_t> offsets_;
};

plan::Kind kindOf(schema::MemoryRegion::Kind k) {
  using K = schema::MemoryRegion::Kind;
  switch (k) {
    case K::ANONYMOUS: return plan::kKindAnonymous;
    case K::FILE: return plan::kKindFile;
    case K::HEAP: return plan::kKindHeap;
    case K::STACK: return plan::kKindStack;
    case K::VDSO: return plan::kKindVdso;
    case K::VVAR: return plan::kKindVvar;
    case K::VVAR_VCLOCK: return plan::kKindVvarVclock;
    case K::MEMFD: return plan::kKindMemfd;
  }
  return plan::kKindAnonymous;
}

// Index of the region containing addr, or -1.
int64_t regionAt(kj::ArrayPtr<const plan::Region> regions, uint64_t addr) {
  size_t lo = 0, hi = regions.size();
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (regions[mid].end <= addr) lo = mid + 1;
    else hi = mid;
  }
  if (lo < regions.size() && regions[lo].start <= addr) return static_cast<int64_t>(lo);
  return -1;
}

uint64_t align8(uint64_t v) { return alignUp(v, 8); }

// Pending signals of a thread (or the process, kProcessWide): those saved with their
// siginfo become PendingSignal entries, in queue order; the returned mask has the
// others, which the restorer re-raises with a made-up siginfo.
uint64_t addPending(capnp::List<uint32_t>::Reader signals, capnp::List<capnp::Data>::Reader infos,
                    int32_t thread, kj::Vector<plan::PendingSignal>& out) {
  uint64_t withInfo = 0;
  for (auto info : infos) {
    plan::PendingSignal ps{};
    ps.thread = thread;
    memcpy(ps.info, info.begin(), std::min(info.size(), sizeof(ps.info)));
    int32_t signo;
    memcpy(&signo, ps.info, sizeof(signo));
    if (signo < 1 || signo > 64) fail(kj::str("image: pending signal with bad number ", signo));
    withInfo |= 1ull << (signo - 1);
    out.add(ps);
  }
  uint64_t mask = 0;
  for (uint32_t sig : signals) {
    if (sig >= 1 && sig <= 64) mask |= 1ull << (sig - 1);
  }
  return mask & ~withInfo;
}

// Views of one shared memory object (shared anonymous memory or a memfd mapped more
// than once) get one share group number in Region::reserved, so the restorer maps
// them from one new object and a write through one view shows through the others.
// /proc/PID/maps gives each shmem object its own inode and each view its offset.
void markShareGroups(kj::Vector<plan::Region>& regions, const kj::Vector<uint64_t>& inodes) {
  auto shareable = [&](size_t i) {
    const plan::Region& r = regions[i];
    return (r.mapFlags & MAP_SHARED) && r.source == plan::kSourceZero && inodes[i] != 0;
  };
  uint32_t nextGroup = 1;
  for (size_t i = 0; i < regions.size(); ++i) {
    if (!shareable(i) || regions[i].reserved != 0) continue;
    bool grouped = false;
    for (size_t j = i + 1; j < regions.size(); ++j) {
      if (shareable(j) && inodes[j] == inodes[i]) {
        regions[j].reserved = nextGroup;
        grouped = true;
      }
    }
    if (grouped) regions[i].reserved = nextGroup++;
  }
}

}  // namespace

RestorePlan buildRestorePlan(FileReader& image, kj::ArrayPtr<const RegionFile> mapFrom) {
  StringTable strings;
  kj::Vector<kj::byte> blob;
  kj::Vector<plan::Region> regions;
  kj::Vector<uint64_t> inodes;  // per region, to find views of one shared object
  kj::Vector<plan::Pages> pages;
  kj::Vector<plan::Thread> threads;
  kj::Vector<plan::SigAction> sigactions;
  kj::Vector<plan::Fd> fds;
  kj::Vector<plan::PendingSignal> pending;
  kj::Vector<plan::PosixTimer> timers;
  plan::Header h{};

  char resolved[PATH_MAX];
  if (realpath(image.path().cStr(), resolved) == nullptr) {
    fail(kj::str("cannot resolve the image path ", image.path()));
  }
  uint32_t imagePath = strings.add(resolved);

  for (size_t i = 0; i < image.sectionCount(); ++i) {
    if (image.section(i).type != static_cast<uint16_t>(SectionType::memoryMap)) continue;
    for (auto r : image.meta<schema::MemoryMap>(i).getRegions()) {
      if (!regions.empty() && r.getStart() < regions.back().end) {
        fail(kj::str(image.section(i).describe(), ": region at ", kj::hex(r.getStart()),
                     " overlaps an earlier memory map"));
      }
      plan::Region out{};
      out.start = r.getStart();
      out.end = r.getEnd();
      out.prot = r.getProt();
      out.mapFlags = r.getFlags();
      out.kind = kindOf(r.getKind());
      out.source = out.kind == plan::kKindFile ? plan::kSourceFile : plan::kSourceZero;
      out.path = r.getPath().size() > 0 ? strings.add(r.getPath()) : plan::kNoString;
      out.fileOffset = r.getFileOffset();
      if (out.source == plan::kSourceFile && out.fileOffset % plan::kPage != 0) {
        fail(kj::str(image.section(i).describe(), ": file region at ", kj::hex(out.start),
                     " has an unaligned file offset"));
      }
      regions.add(out);
      inodes.add(r.getInode());
    }
  }
  markShareGroups(regions, inodes);
  // Attachments of System V segments the restart made again with their ids
  // (resources/sysv_ipc.h): attached again, the segment holds their pages. An image
  // without its segments (before the ipc section) restores them as copies, as then.
  std::map<uint64_t, std::pair<uint64_t, bool>> segments;  // id -> size, removed
  for (size_t i = 0; i < image.sectionCount(); ++i) {
    if (image.section(i).type != static_cast<uint16_t>(SectionType::ipc)) continue;
    for (auto s : image.meta<schema::Ipc>(i).getSysvShm()) {
      segments[static_cast<uint32_t>(s.getPerm().getId())] = {s.getSize(), s.getRemoved()};
    }
  }
  kj::Vector<bool> fromFile;
  for (size_t i = 0; i < regions.size(); ++i) {
    bool found = false;
    const char* path = regions[i].path != plan::kNoString ? strings.at(regions[i].path) : "";
    auto seg = segments.find(inodes[i]);
    if ((regions[i].mapFlags & MAP_SHARED) && strncmp(path, "/SYSV", 5) == 0 && seg != segments.end()) {
      uint64_t size = (seg->second.first + plan::kPage - 1) / plan::kPage * plan::kPage;
      if (regions[i].fileOffset != 0 || regions[i].end - regions[i].start != size) {
        fail(kj::str("the System V segment with id ", inodes[i], " is attached in part only (", kj::hex(regions[i].start), "-",
                     kj::hex(regions[i].end), " of its ", size, " bytes); such a job cannot be restarted"));
      }
      regions[i].source = plan::kSourceSysvShm;
      regions[i].reserved = static_cast<uint32_t>(inodes[i]);
      regions[i].fileOffset = seg->second.second ? plan::kShmRemoveAfter : 0;
      found = true;
    }
    // Regions mapped from a file made for them (a tree's shared objects): shared
    // views of that file, which already holds their pages.
    for (const RegionFile& f : mapFrom) {
      if (f.start != regions[i].start) continue;
      if (!(regions[i].mapFlags & MAP_SHARED)) fail(kj::str("region at ", kj::hex(f.start), " is not shared memory"));
      regions[i].source = plan::kSourceFile;
      regions[i].path = strings.add(f.path);
      regions[i].reserved = 0;
      found = true;
    }
    fromFile.add(found);
  }

  // Saved pages, in image order, each split at region borders; a later copy of a
  // page (pre-copy) is copied over the earlier one.
  auto addPages = [&](const SectionInfo& info, uint64_t addr, uint64_t left, uint64_t imageOffset) {
    while (left > 0) {  // a run may span adjacent regions: split it at their borders
      int64_t ri = regionAt(regions, addr);
      if (ri < 0) {
        fail(kj::str(info.describe(), ": saved page at ", kj::hex(addr), " lies outside every mapped region"));
      }
      const plan::Region& owner = regions[ri];
      uint64_t len = std::min<uint64_t>(left, owner.end - addr);
      if (fromFile[ri]) {  // the file holds them
        addr += len;
        imageOffset += len;
        left -= len;
        continue;
      }
      plan::Pages p{};
      p.addr = addr;
      p.len = len;
      p.imageOffset = imageOffset;
      p.region = static_cast<uint32_t>(ri);
      p.method = plan::kPagesCopy;
      pages.add(p);
      addr += len;
      imageOffset += len;
      left -= len;
    }
  };
  // Pre-copy (format.h): the rounds' pages come first in the plan, in image order, so
  // a later copy of a page is copied over an earlier one; then the pages
  // taken while frozen. A round's run is used only where the frozen image wants the
  // page (kept, or sent again while frozen), so that dropped pages stay unmapped,
  // and long runs stay whole (one mapping) however the later rounds pick at them.
  Intervals wanted, precopied;
  for (size_t i = 0; i < image.sectionCount(); ++i) {
    const SectionInfo& info = image.section(i);
    bool kept = info.type == static_cast<uint16_t>(SectionType::keptPages);
    if (!kept && info.type != static_cast<uint16_t>(SectionType::pages)) continue;
    auto meta = image.meta<schema::Pages>(i);
    if (!kept && meta.getPrecopyRound() > 0) continue;
    for (auto run : meta.getRuns()) {
      wanted.add(run.getAddr(), run.getAddr() + static_cast<uint64_t>(run.getPages()) * plan::kPage);
    }
  }
  for (size_t i = 0; i < image.sectionCount(); ++i) {
    const SectionInfo& info = image.section(i);
    if (info.type != static_cast<uint16_t>(SectionType::pages)) continue;
    auto meta = image.meta<schema::Pages>(i);
    if (meta.getPrecopyRound() == 0) continue;
    uint64_t dataAt = 0;
    for (auto run : meta.getRuns()) {
      uint64_t addr = run.getAddr(), len = static_cast<uint64_t>(run.getPages()) * plan::kPage;
      precopied.add(addr, addr + len);
      uint64_t base = info.layout.dataOffset + dataAt;
      wanted.forEachIn(addr, addr + len, [&](uint64_t s, uint64_t e) { addPages(info, s, e - s, base + (s - addr)); });
      dataAt += len;
    }
  }
  for (size_t i = 0; i < image.sectionCount(); ++i) {
    const SectionInfo& info = image.section(i);
    if (info.type == static_cast<uint16_t>(SectionType::keptPages)) {
      for (auto run : image.meta<schema::Pages>(i).getRuns()) {
        uint64_t end = run.getAddr() + static_cast<uint64_t>(run.getPages()) * plan::kPage;
        if (!precopied.covers(run.getAddr(), end)) {
          fail(kj::str(info.describe(), ": kept pages at ", kj::hex(run.getAddr()), " were not sent before the freeze"));
        }
      }
      continue;
    }
    if (info.type != static_cast<uint16_t>(SectionType::pages)) continue;
    auto meta = image.meta<schema::Pages>(i);
    if (meta.getPrecopyRound() > 0) continue;
    uint64_t dataAt = 0;
    for (auto run : meta.getRuns()) {
      uint64_t len = static_cast<uint64_t>(run.getPages()) * plan::kPage;
      addPages(info, run.getAddr(), len, info.layout.dataOffset + dataAt);
      dataAt += len;
    }
  }

  // Sparse pages (format.h): each extent's bytes copied to its address, over what the
  // region holds once mapped (zeros, or the file's bytes). Never written with pre-copy
  // rounds, whose pages under an extent would show through around it.
  for (size_t i = 0; i < image.sectionCount(); ++i) {
    const SectionInfo& info = image.section(i);
    if (info.type != static_cast<uint16_t>(SectionType::sparsePages)) continue;
    if (!precopied.empty()) fail(kj::str(info.describe(), ": sparse pages in an image with pre-copy rounds"));
    uint64_t dataAt = info.layout.dataOffset;
    for (auto e : image.meta<schema::Pages>(i).getExtents()) {
      uint64_t addr = e.getAddr(), left = e.getLen();
      while (left > 0) {
        int64_t ri = regionAt(regions, addr);
        if (ri < 0) fail(kj::str(info.describe(), ": saved bytes at ", kj::hex(addr), " lie outside every mapped region"));
        uint64_t len = std::min<uint64_t>(left, regions[ri].end - addr);
        if (!fromFile[ri]) {
          plan::Pages p{};
          p.addr = addr;
          p.len = len;
          p.imageOffset = dataAt;
          p.region = static_cast<uint32_t>(ri);
          p.method = plan::kPagesCopy;
          pages.add(p);
        }
        addr += len;
        dataAt += len;
        left -= len;
      }
    }
  }

  for (size_t i = 0; i < image.sectionCount(); ++i) {
    if (image.section(i).type != static_cast<uint16_t>(SectionType::threads)) continue;
    for (auto t : image.meta<schema::Threads>(i).getThreads()) {
      plan::Thread out{};
      out.vtid = t.getVtid();
      out.flags = threads.empty() ? plan::kThreadMain : 0;
      auto frame = t.getSigframe();
      out.sigframe = blob.size();
      out.sigframeLen = frame.size();
      blob.addAll(frame);
      while (blob.size() % 16 != 0) blob.add(0);
      out.sigframeAddr = t.getSigframeAddr();
      out.kernel.fsBase = t.getFsBase();
      out.kernel.gsBase = t.getGsBase();
      out.kernel.tidAddress = t.getTidAddress();
      out.kernel.robustList = t.getRobustList();
      out.kernel.robustListLen = t.getRobustListLen();
      out.kernel.rseqAddr = t.getRseqAddr();
      out.kernel.rseqLen = t.getRseqLen();
      out.kernel.rseqSig = t.getRseqSig();
      out.kernel.altStackSp = t.getAltStackSp();
      out.kernel.altStackSize = t.getAltStackSize();
      out.kernel.altStackFlags = t.getAltStackFlags();
      if (t.hasName()) strncpy(out.name, t.getName().cStr(), sizeof(out.name) - 1);
      out.oldTid = t.getRealTid();
      out.pendingMask = addPending(t.getPendingSignals(), t.getPendingSiginfo(),
                                   static_cast<int32_t>(threads.size()), pending);
      threads.add(out);
    }
  }
  if (threads.empty()) fail(kj::str("image ", image.path(), " has no threads section"));

  for (size_t i = 0; i < image.sectionCount(); ++i) {
    if (image.section(i).type != static_cast<uint16_t>(SectionType::process)) continue;
    auto p = image.meta<schema::Process>(i);
    auto mm = p.getMm();
    h.flags |= plan::kPlanHasMmLayout;
    h.mm = plan::MmLayout{mm.getStartCode(), mm.getEndCode(), mm.getStartData(), mm.getEndData(),
                          mm.getStartBrk(), mm.getBrk(), mm.getStartStack(), mm.getArgStart(),
                          mm.getArgEnd(), mm.getEnvStart(), mm.getEnvEnd(), blob.size(),
                          mm.getAuxv().size()};
    blob.addAll(mm.getAuxv());
    while (blob.size() % 16 != 0) blob.add(0);
    for (auto a : p.getSigactions()) {
      sigactions.add(plan::SigAction{a.getHandler(), a.getFlags(), a.getRestorer(), a.getMask()});
    }
    h.itimerValueNs = p.getItimerReal().getValueNs();
    h.itimerIntervalNs = p.getItimerReal().getIntervalNs();
    h.resumeInfoAddr = p.getResumeInfoAddr();
    h.resumeEntry = p.getResumeEntry();
    h.processPending = addPending(p.getProcessPending(), p.getProcessPendingSiginfo(), plan::kProcessWide, pending);
    for (auto t : p.getPosixTimers()) {
      plan::PosixTimer out{};
      out.id = t.getId();
      out.clock = t.getClock();
      out.notify = t.getNotify();
      out.signo = t.getSigno();
      out.value = t.getValue();
      out.thread = -1;
      if (out.notify & plan::kSigevThreadId) {
        for (size_t k = 0; k < threads.size(); ++k) {
          if (threads[k].oldTid == t.getThread()) out.thread = static_cast<int32_t>(k);
        }
        if (out.thread < 0) {
          fail(kj::str("image ", image.path(), ": POSIX timer ", out.id, " signals thread ", t.getThread(),
                       ", which the image does not have"));
        }
      }
      out.valueNs = t.getTimer().getValueNs();
      out.intervalNs = t.getTimer().getIntervalNs();
      out.absoluteNs = t.getAbsoluteNs();
      timers.add(out);
    }
  }
  for (size_t i = 0; i < image.sectionCount(); ++i) {
    if (image.section(i).type != static_cast<uint16_t>(SectionType::files)) continue;
    for (auto f : image.meta<schema::Files>(i).getFds()) {
      fds.add(plan::Fd{f.getFd(), f.getCloexec() ? plan::kFdCloexec : 0u});
    }
  }
  h.configFd = -1;  // set by the caller (RestorePlan::setConfigFd) for a migrated process
  h.magic = plan::kMagic;
  h.version = plan::kVersion;
  h.headerSize = sizeof(plan::Header);
  h.imagePath = imagePath;
  h.regionCount = static_cast<uint32_t>(regions.size());
  h.pagesCount = static_cast<uint32_t>(pages.size());
  h.threadCount = static_cast<uint32_t>(threads.size());
  h.regions = sizeof(plan::Header);
  h.pages = h.regions + regions.size() * sizeof(plan::Region);
  h.threads = h.pages + pages.size() * sizeof(plan::Pages);
  h.sigactionCount = static_cast<uint32_t>(sigactions.size());
  h.fdCount = static_cast<uint32_t>(fds.size());
  h.sigactions = h.threads + threads.size() * sizeof(plan::Thread);
  h.fds = h.sigactions + sigactions.size() * sizeof(plan::SigAction);
  h.pendingCount = static_cast<uint32_t>(pending.size());
  h.pendingSignals = h.fds + fds.size() * sizeof(plan::Fd);
  // By id: the restorer without PR_TIMER_CREATE_RESTORE_IDS can only count ids upwards.
  std::sort(timers.begin(), timers.end(), [](const plan::PosixTimer& a, const plan::PosixTimer& b) { return a.id < b.id; });
  h.timerCount = static_cast<uint32_t>(timers.size());
  h.timers = h.pendingSignals + pending.size() * sizeof(plan::PendingSignal);
  h.strings = h.timers + timers.size() * sizeof(plan::PosixTimer);
  h.stringsSize = strings.bytes().size();
  h.blob = align8(h.strings + h.stringsSize);
  h.blobSize = blob.size();
  h.totalSize = align8(h.blob + h.blobSize);

  auto storage = kj::heapArray<uint64_t>(h.totalSize / 8);
  memset(storage.begin(), 0, h.totalSize);
  auto* base = reinterpret_cast<kj::byte*>(storage.begin());
  auto copyIn = [&](uint64_t at, const void* from, size_t len) {
    if (len > 0) memcpy(base + at, from, len);
  };
  copyIn(0, &h, sizeof(h));
  copyIn(h.regions, regions.begin(), regions.size() * sizeof(plan::Region));
  copyIn(h.pages, pages.begin(), pages.size() * sizeof(plan::Pages));
  copyIn(h.threads, threads.begin(), threads.size() * sizeof(plan::Thread));
  copyIn(h.sigactions, sigactions.begin(), sigactions.size() * sizeof(plan::SigAction));
  copyIn(h.fds, fds.begin(), fds.size() * sizeof(plan::Fd));
  copyIn(h.pendingSignals, pending.begin(), pending.size() * sizeof(plan::PendingSignal));
  copyIn(h.timers, timers.begin(), timers.size() * sizeof(plan::PosixTimer));
  copyIn(h.strings, strings.bytes().begin(), h.stringsSize);
  copyIn(h.blob, blob.begin(), h.blobSize);

  if (const char* problem = plan::validate(base, h.totalSize)) {
    fail(kj::str("image ", image.path(), " gives an invalid restore plan: ", problem));
  }
  return RestorePlan(kj::mv(storage));
}

}  // namespace mig::image
