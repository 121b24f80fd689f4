// Where a checkpoint gets a process's memory from: its memory map, which pages of
// each region must be saved, and their contents. Which pages were written since a
// pre-copy round is the tracker's business (dirty_pages.h, precopy.h), not the
// source's: a source answers about any part of a region (partOf).
#pragma once

#include "image/image.capnp.h"

#include <kj/array.h>
#include <kj/string.h>
#include <kj/vector.h>

#include <cstdint>
#include <sys/types.h>

namespace mig::resources {

struct MappedRegion {
  uint64_t start;
  uint64_t end;
  uint32_t prot;   // PROT_*
  uint32_t flags;  // MAP_PRIVATE or MAP_SHARED
  image::schema::MemoryRegion::Kind kind;
  kj::String path;  // backing file, "" for anonymous memory
  uint64_t offset;
  uint64_t inode;
  bool saveWhole = false;  // a private file mapping saved as anonymous memory, every non-zero
                           // page (a mig image a restored process maps; for a migration,
                           // mappings of data files the destination may not have)
};

struct PageSpan {
  uint64_t addr;
  uint64_t pages;
};

class PageSource {
 public:
  virtual ~PageSource() noexcept(false) = default;

  // The regions to save, sorted by address ([vsyscall] and the like left out).
  virtual kj::Array<MappedRegion> regions() = 0;

  // The pages of `r` whose contents the image must carry (touched anonymous
  // pages, modified pages of private file mappings, shared memory), as runs.
  virtual void pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) = 0;

  virtual void read(uint64_t addr, void* buf, size_t len) = 0;

  // The runs `spans`, each into its place `to[i]`: what read() of each gives, in fewer
  // system calls where the source can.
  virtual void readSpans(kj::ArrayPtr<const PageSpan> spans, kj::ArrayPtr<kj::byte* const> to);
  // The same, one after the other into `buf`.
  void readSpans(kj::ArrayPtr<const PageSpan> spans, kj::byte* buf);
};

// Reads a stopped (parked) process through /proc/PID/{maps,pagemap,mem}.
class ProcPageSource final : public PageSource {
 public:
  // forMigration: the image goes to another host, which has the job's programs and
  // libraries but maybe not its data files: private mappings of files that are not
  // ELF objects are saved whole, as anonymous memory.
  explicit ProcPageSource(pid_t pid, bool forMigration = false);
  ~ProcPageSource() noexcept(false) override;

  kj::Array<MappedRegion> regions() override;
  void pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) override;
  void read(uint64_t addr, void* buf, size_t len) override;
  using PageSource::readSpans;
  void readSpans(kj::ArrayPtr<const PageSpan> spans, kj::ArrayPtr<kj::byte* const> to) override;

 private:
  pid_t pid_;
  bool forMigration_;
  int pagemap_ = -1;
  int mem_ = -1;
};

// Parses one line of /proc/PID/maps; returns false for lines to leave out
// ([vsyscall], [uprobes], the restorer's own leftover mapping).
bool parseMapsLine(kj::StringPtr line, MappedRegion& out);

// For a migration, before the job is frozen: the path of a file that process `pid` has
// mapped shared and writable without holding a lock on that file through an fd open
// for reading and writing, or nullptr. The
// shim keeps such a mapping coherent with the file through an fd of it
// (shim/forward/shared_file_mapping.h) at the locks that order its sharing; without
// them its writes could not be kept in step with the file from another host, so such a
// job is not moved (send_command.cc says so in one line).
kj::Maybe<kj::String> sharedWritableFileMapping(pid_t pid);

// Before a tree's migration, without freezing it: the name of a region process `pid`
// maps shared that is memory rather than a file (shared anonymous memory, a memfd, a
// deleted /dev/shm object, a System V segment), or nullptr. What members share moves
// frozen, once (send_command.cc): such a tree is not moved pre-copy.
kj::Maybe<kj::String> sharedMemoryMapping(pid_t pid);

}  // namespace mig::resources
