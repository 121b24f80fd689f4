// Memory shared between the members of a process tree: a MAP_SHARED object that has
// no name to reopen it by (shared anonymous memory inherited across fork, a memfd,
// a deleted file such as the /dev/shm/sem.* files of python's multiprocessing locks)
// mapped by two members or more. Each member saved alone would come back with a
// copy of its own, and a write (or a futex wake, a lock) in one would no longer
// reach the others. Captured once, into the `ipc` section, with its contents; made
// once at the restart (one memfd, held by the restart process) and mapped by every
// member from it, at its old addresses and offsets.
#pragma once

#include "image/file_reader.h"
#include "image/image.capnp.h"
#include "image/plan_builder.h"
#include "image/writer.h"
#include "resources/page_source.h"
#include "resources/process_capture.h"

#include <kj/io.h>
#include <kj/vector.h>

#include <map>

namespace mig::resources {

struct SharedView {
  pid_t pid;   // kernel PID of the member
  pid_t vpid;  // its virtual PID
  uint64_t start, end, offset;
};

struct SharedObject {
  kj::String name;  // as /proc/PID/maps shows it
  uint64_t size = 0;
  kj::Vector<SharedView> views;
};

// The shared objects of a tree's live members (those whose block is set), views
// sorted by member and address. An object mapped by one member only is not one.
kj::Vector<SharedObject> findTreeSharedMemory(kj::ArrayPtr<const TreeCaptureMember> members);

// Fills `list` and writes the objects' contents (read through a view of each page,
// zero where no view shows it) as data; `dataAt` is where they start in the section's
// data, and is advanced past them.
void setSharedMemory(kj::ArrayPtr<const SharedObject> objects,
                     capnp::List<image::schema::SharedMemoryObject>::Builder list, uint64_t& dataAt);
void writeSharedMemoryData(kj::ArrayPtr<const SharedObject> objects, image::ImageWriter& w);

// A process's memory without the views of the tree's objects and its attachments of
// the System V segments `segments` (their pages are in the ipc section): wraps the
// process's own page source.
class WithoutSharedViews final : public PageSource {
 public:
  WithoutSharedViews(PageSource& inner, kj::ArrayPtr<const SharedObject> objects, pid_t pid,
                     kj::ArrayPtr<const int32_t> segments);
  kj::Array<MappedRegion> regions() override { return inner_.regions(); }
  void pagesToSave(const MappedRegion& r, kj::Vector<PageSpan>& out) override;
  void read(uint64_t addr, void* buf, size_t len) override { inner_.read(addr, buf, len); }

 private:
  PageSource& inner_;
  kj::Vector<uint64_t> starts_;
  kj::ArrayPtr<const int32_t> segments_;
};

// At the restart of a tree: every object made (a memfd of its size, filled), held
// here until the tree ends; what each member maps from them.
class TreeSharedMemory {
 public:
  // Throws (one line) when an object cannot be made.
  explicit TreeSharedMemory(image::FileReader& img);
  // The regions member `vpid` maps from the objects (image/plan_builder.h).
  kj::ArrayPtr<const image::RegionFile> regionsOf(int32_t vpid) const;

 private:
  kj::Vector<kj::AutoCloseFd> fds_;
  std::map<int32_t, kj::Vector<image::RegionFile>> regions_;
};

// The index of the image's ipc section, or 0 when it has none.
size_t ipcSection(image::FileReader& img);

}  // namespace mig::resources
