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
#include "resources/sysv_ipc.h"

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

// A tree that migrates (shadow/send_command.cc sendTree): each member becomes a job of
// its own on the new host, from an image of its own and a restart of its own
// (docs/design.md "Moving a process tree"), yet what they share must be one object
// there again. The root's image carries it whole: every shared object with its
// contents and views, every System V object with its contents. Every other member's
// image lists what it maps and attaches only: its objects' and segments' dataOffset is
// kContentsElsewhere, no contents. After the contents, the section's data holds the
// holder's name (below), in every member's image. The root's restart, which the sender lets get ready first, makes the objects: System V ones
// with their keys and ids (restoreSysvIpc), shared memory as memfds handed to a holder
// process that keeps them until the root ends and publishes them under
// /dev/shm/HOLDER.N (symlinks to /proc/<holder>/fd/M); each member's restorer maps its
// views from there and attaches its segments by id, so they share one object again.
constexpr uint64_t kContentsElsewhere = ~uint64_t{0};
struct MovingShare {
  kj::ArrayPtr<const SharedObject> shared;
  const SysvIpc* sysv = nullptr;  // the job's System V objects (never null)
  kj::StringPtr holder;           // unique per hop (the sender picks it)
};

// The image of one parked member of a moving tree (an image of one process, as
// migctl::captureFrozen writes, plus the ipc section above); `root`: the one that
// carries the objects. The views' and segments' pages are in no member's pages.
CaptureStats captureMovingMember(pid_t pid, const control::Block& block, image::ByteSink& out,
                                 const CaptureOptions& options, const MovingShare& share, bool root);

// At the restart of one migrated process (migctl restart --migrated): whether its
// image makes the objects of its ipc section (a single process, a tree's root) or only
// attaches them (another member of a tree).
bool ipcAttachOnly(image::FileReader& img);

// At the restart of one migrated process: the regions it maps from a moving tree's
// shared objects (nothing when its image has none). The root's restart makes the
// objects and their holder first (see above); another member's finds them by the
// holder's name, or fails with one line when they are not there.
kj::Array<image::RegionFile> movedSharedRegions(image::FileReader& img);

}  // namespace mig::resources
