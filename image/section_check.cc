// See section_check.h.
#include "image/section_check.h"

#include <algorithm>
#include <cstring>

#include "image/image.capnp.h"
#include "image/image_error.h"

#include <capnp/schema.h>


namespace mig::image {
namespace {

void requireNoData(const SectionInfo& info) {
  if (info.dataLen != 0) fail(kj::str("this section type carries no data, found ", info.dataLen, " bytes"));
}

void checkHeader(const SectionInfo& info, schema::Header::Reader h) {
  requireNoData(info);
  if (h.getFormatVersion() < kOldestFormatVersion || h.getFormatVersion() > kFormatVersion) {
    fail(kj::str("header says format version ", h.getFormatVersion()));
  }
  if (h.getArch() != "x86_64") {
    fail(kj::str("image was made on architecture '", h.getArch(), "'; this host is x86_64"));
  }
  if (h.getPageSize() != kPageSize) {
    fail(kj::str("image uses a page size of ", h.getPageSize(), " bytes; this host uses ",
                 kPageSize));
  }
  // Touch every pointer field so a malformed one fails here, not in a later user.
  (void)h.getKernelRelease();
  (void)h.getHostname();
  (void)h.getCommand();
  (void)h.getCpu().getVendor();
}

void checkRange(uint64_t start, uint64_t end, kj::StringPtr what) {
  if (start % kPageSize != 0 || end % kPageSize != 0) fail(kj::str(what, " is not page aligned"));
  if (start >= end) fail(kj::str(what, " is empty or reversed"));
  if (end > kUserAddressLimit) fail(kj::str(what, " lies outside the user address space"));
}

void checkMemoryMap(const SectionInfo& info, schema::MemoryMap::Reader m) {
  requireNoData(info);
  uint64_t prevEnd = 0;
  uint32_t i = 0;
  for (auto r : m.getRegions()) {
    auto what = kj::str("region ", i, " [", kj::hex(r.getStart()), "-", kj::hex(r.getEnd()), ")");
    checkRange(r.getStart(), r.getEnd(), what);
    if (r.getStart() < prevEnd) fail(kj::str(what, " overlaps or precedes the previous region"));
    if (r.getProt() > 7) fail(kj::str(what, " has unknown protection bits ", r.getProt()));
    if (static_cast<uint16_t>(r.getKind()) > static_cast<uint16_t>(schema::MemoryRegion::Kind::MEMFD)) {
      fail(kj::str(what, " has an unknown kind"));
    }
    if (r.getKind() == schema::MemoryRegion::Kind::FILE && r.getPath().size() == 0) {
      fail(kj::str(what, " is file-backed but names no file"));
    }
    prevEnd = r.getEnd();
    ++i;
  }
}

void checkPages(const SectionInfo& info, schema::Pages::Reader p) {
  uint64_t total = 0;
  uint64_t prevEnd = 0;
  uint32_t i = 0;
  for (auto run : p.getRuns()) {
    uint64_t len = static_cast<uint64_t>(run.getPages()) * kPageSize;
    auto what = kj::str("page run ", i, " at ", kj::hex(run.getAddr()));
    if (run.getPages() == 0) fail(kj::str(what, " has no pages"));
    if (run.getAddr() > kUserAddressLimit) fail(kj::str(what, " lies outside the user address space"));
    checkRange(run.getAddr(), run.getAddr() + len, what);
    if (run.getAddr() < prevEnd) fail(kj::str(what, " overlaps or precedes the previous run"));
    prevEnd = run.getAddr() + len;
    total += len;  // cannot overflow: every run ends below 2^47 and runs do not overlap
    ++i;
  }
  if (info.type == static_cast<uint16_t>(SectionType::pageSums)) {
    if (total / kPageSize * 8 != info.dataLen) {
      fail(kj::str("page runs of ", total / kPageSize, " pages need ", total / kPageSize * 8,
                   " bytes of checksums but the section holds ", info.dataLen));
    }
    return;
  }
  if (info.type == static_cast<uint16_t>(SectionType::sparsePages)) {
    // Extents in address order, each inside the pages the runs stand for, their bytes
    // the whole data: a plan copies each to its address and nothing else.
    if (p.getPrecopyRound() != 0) fail(kj::str("sparse pages with a pre-copy round"));
    auto runs = p.getRuns();
    uint32_t r = 0;
    uint64_t bytes = 0, prev = 0;
    uint32_t k = 0;
    for (auto e : p.getExtents()) {
      auto what = kj::str("extent ", k, " at ", kj::hex(e.getAddr()));
      if (e.getLen() == 0 || e.getAddr() % 8 != 0 || e.getLen() % 8 != 0) fail(kj::str(what, " is empty or not 8-byte aligned"));
      if (e.getAddr() < prev) fail(kj::str(what, " overlaps or precedes the previous extent"));
      uint64_t end = e.getAddr() + e.getLen();
      // Runs are sorted and disjoint; an extent may span adjacent runs.
      uint64_t at = e.getAddr();
      while (at < end) {
        while (r < runs.size() && runs[r].getAddr() + static_cast<uint64_t>(runs[r].getPages()) * kPageSize <= at) ++r;
        if (r == runs.size() || runs[r].getAddr() > at) fail(kj::str(what, " lies outside the section's page runs"));
        at = std::min(end, runs[r].getAddr() + static_cast<uint64_t>(runs[r].getPages()) * kPageSize);
      }
      prev = end;
      bytes += e.getLen();
      ++k;
    }
    if (bytes != info.dataLen) {
      fail(kj::str("sparse page extents add up to ", bytes, " bytes but the section holds ", info.dataLen));
    }
    return;
  }
  if (info.type == static_cast<uint16_t>(SectionType::keptPages) ||
      info.type == static_cast<uint16_t>(SectionType::postcopyPages)) {
    requireNoData(info);
    if (p.getPrecopyRound() != 0) fail(kj::str("kept pages with a pre-copy round"));
    return;
  }
  if (total != info.dataLen) {
    fail(kj::str("page runs add up to ", total, " bytes but the section holds ", info.dataLen));
  }
}

void checkThreads(const SectionInfo& info, schema::Threads::Reader t) {
  requireNoData(info);
  auto threads = t.getThreads();
  if (threads.size() == 0) fail(kj::str("no threads"));
  if (threads.size() > kMaxThreads) fail(kj::str(threads.size(), " threads is more than ", kMaxThreads));
  uint32_t i = 0;
  for (auto th : threads) {
    if (th.getVtid() <= 0) fail(kj::str("thread ", i, " has thread id ", th.getVtid()));
    if (th.getSigframe().size() > kMaxSigframeBytes) {
      fail(kj::str("thread ", i, " has a ", th.getSigframe().size(), "-byte signal frame"));
    }
    ++i;
  }
}

void checkProcess(const SectionInfo& info, schema::Process::Reader p) {
  requireNoData(info);
  if (p.getSigactions().size() > 64) fail(kj::str(p.getSigactions().size(), " signal actions, at most 64"));
  if (p.getItimerReal().getValueNs() < 0 || p.getItimerReal().getIntervalNs() < 0) {
    fail(kj::str("negative timer"));
  }
  if (p.getMm().getAuxv().size() > 4096) fail(kj::str("auxiliary vector of ", p.getMm().getAuxv().size(), " bytes"));
  (void)p.getCwd();
  (void)p.getRlimits();
  (void)p.getProcessPending();
}

// What holds for every fd record whatever its kind; each kind checks its own group
// at restart (resources/<kind>.cc, FdKind::check).
void checkFiles(const SectionInfo& info, schema::Files::Reader f) {
  requireNoData(info);
  static const uint16_t kFdKinds = static_cast<uint16_t>(capnp::Schema::from<schema::FileDescriptor::Kind>().getEnumerants().size());
  int32_t prev = -1;
  for (auto fd : f.getFds()) {
    if (fd.getFd() <= prev) fail(kj::str("fd ", fd.getFd(), " is out of order or repeated"));
    if (fd.getDupOf() >= fd.getFd()) fail(kj::str("fd ", fd.getFd(), " duplicates a later fd"));
    if (static_cast<uint16_t>(fd.getKind()) >= kFdKinds) {
      fail(kj::str("fd ", fd.getFd(), " has an unknown kind"));
    }
    (void)fd.getPath();
    (void)fd.getContents();
    prev = fd.getFd();
  }
}

void checkEnd(const SectionInfo& info, schema::End::Reader) { requireNoData(info); }

void checkTree(const SectionInfo& info, schema::Tree::Reader t) {
  requireNoData(info);
  auto members = t.getMembers();
  if (members.size() == 0) fail(kj::str("a process tree without members"));
  for (uint32_t i = 0; i < members.size(); ++i) {
    auto m = members[i];
    if (m.getVpid() <= 0) fail(kj::str("tree member ", i, " has PID ", m.getVpid()));
    (void)m.getCommand();
    bool parentBefore = i == 0;
    for (uint32_t j = 0; j < i; ++j) {
      if (members[j].getVpid() == m.getVpid()) fail(kj::str("PID ", m.getVpid(), " is in the tree twice"));
      if (members[j].getVpid() == m.getVppid()) parentBefore = !members[j].getZombie();
    }
    if (!parentBefore) fail(kj::str("tree member ", m.getVpid(), " comes before its parent ", m.getVppid(), " or has a dead one"));
  }
}

// Every object's contents lie inside the section's data, or are in another image
// (offset all ones: a member of a tree that migrated, whose root's image has them,
// resources/shared_memory.h kContentsElsewhere).
void checkIpc(const SectionInfo& info, schema::Ipc::Reader ipc) {
  auto inData = [&](uint64_t at, uint64_t size, kj::StringPtr what) {
    if (at == ~uint64_t{0}) return;
    if (at > info.dataLen || size > info.dataLen - at) {
      fail(kj::str("the contents of ", what, " lie outside the ipc section's data"));
    }
  };
  for (auto o : ipc.getSharedMemory()) {
    inData(o.getDataOffset(), o.getSize(), o.getName());
    for (auto v : o.getViews()) {
      if (v.getEnd() <= v.getStart() || v.getOffset() > o.getSize() || v.getEnd() - v.getStart() > o.getSize() - v.getOffset()) {
        fail(kj::str("a view of shared object ", o.getName(), " lies outside it"));
      }
    }
  }
  for (auto s : ipc.getSysvShm()) inData(s.getDataOffset(), s.getSize(), kj::str("SysV segment ", s.getPerm().getId()));
}

void checkMember(const SectionInfo& info, schema::Member::Reader m) {
  requireNoData(info);
  if (m.getVpid() <= 0) fail(kj::str("member section for PID ", m.getVpid()));
}

void checkParent(const SectionInfo& info, schema::Parent::Reader p) {
  requireNoData(info);
  auto file = p.getFile();
  if (file.size() == 0 || strchr(file.cStr(), '/') != nullptr || file == "." || file == "..") {
    fail(kj::str("parent image name '", file, "' is not a file name"));
  }
}

}  // namespace

void checkSectionMeta(const SectionInfo& info, capnp::MessageReader& message) {
  switch (static_cast<SectionType>(info.type)) {
    case SectionType::header: return checkHeader(info, message.getRoot<schema::Header>());
    case SectionType::memoryMap: return checkMemoryMap(info, message.getRoot<schema::MemoryMap>());
    case SectionType::pages: return checkPages(info, message.getRoot<schema::Pages>());
    case SectionType::keptPages: return checkPages(info, message.getRoot<schema::Pages>());
    case SectionType::pageSums: return checkPages(info, message.getRoot<schema::Pages>());
    case SectionType::postcopyPages: return checkPages(info, message.getRoot<schema::Pages>());
    case SectionType::sparsePages: return checkPages(info, message.getRoot<schema::Pages>());
    case SectionType::threads: return checkThreads(info, message.getRoot<schema::Threads>());
    case SectionType::process: return checkProcess(info, message.getRoot<schema::Process>());
    case SectionType::files: return checkFiles(info, message.getRoot<schema::Files>());
    case SectionType::end: return checkEnd(info, message.getRoot<schema::End>());
    case SectionType::tree: return checkTree(info, message.getRoot<schema::Tree>());
    case SectionType::member: return checkMember(info, message.getRoot<schema::Member>());
    case SectionType::parent: return checkParent(info, message.getRoot<schema::Parent>());
    case SectionType::ipc: return checkIpc(info, message.getRoot<schema::Ipc>());
  }
}

}  // namespace mig::image
