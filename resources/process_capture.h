// Writes the image of a process whose threads are parked by the shim: its
// process-wide state (process_attrs.cc), threads (threads.cc), fds (fd_capture.cc)
// and memory (memory.cc), from the shim's checkpoint block, a PageSource and
// /proc/PID. A tree is the same per member, after a section naming the members.
#pragma once

#include "image/byte_io.h"
#include "resources/copy_before_write.h"
#include "resources/fd_kind.h"
#include "resources/page_source.h"
#include "resources/process_tree.h"
#include "shim/control_protocol.h"

#include <kj/function.h>
#include <kj/string.h>
#include <kj/vector.h>

#include <sys/types.h>

namespace mig::image { class ImageWriter; }

namespace mig::resources {

class PageRangeSet;

struct CaptureStats {
  uint64_t imageBytes;
  uint64_t savedPages;
  uint32_t threads;
  uint32_t fds;
  uint64_t pendingSignals;  // bit (n-1): signal n was pending (for a thread or the process)
                            // and went into the image
  kj::Vector<kj::String> warnings;  // state not saved, one line each naming the fd (a TCP
                                    // connection, connections waiting to be accepted)
  kj::Vector<int> connections;      // the fds of TCP connections not saved: `checkpoint
                                    // --stop` resets them (sockets::resetOnExit)
};

// The header of an image of the process `pid` (its kernel PID) known as `vpid`: the
// host facts, its command line and its owner (real uid, gid and groups, from /proc):
// every capture path makes its header here, so none forgets the owner.
void fillJobHeader(image::schema::Header::Builder out, pid_t pid, int32_t vpid);

// options.forMigration: the image is for a move, not a restart: what stays at home
// (sockets, deleted files) is not read beyond what every fd records, and nothing is
// warned about.
CaptureStats captureProcess(pid_t pid, const control::Block& block, PageSource& memory, image::ByteSink& out,
                            const CaptureOptions& options = {});

// The same into an image already begun (pre-copy: its pages sections went first);
// `held`: the pages the receiver has from them (memory.h). Finishes the image.
void captureProcessInto(pid_t pid, const control::Block& block, PageSource& memory, image::ImageWriter& w,
                        const PageRangeSet* held, CaptureStats& stats, const CaptureOptions& options);

// Everything but memory (which a concurrent checkpoint writes after the job resumed:
// copy_before_write.h); the image is not finished.
void captureProcessState(pid_t pid, const control::Block& block, image::ImageWriter& w, CaptureStats& stats,
                         const CaptureOptions& options);

// One member of a tree being captured: a live one is parked by its shim (`block`
// is its checkpoint block, read from its memory), a zombie has block == nullptr.
struct TreeCaptureMember {
  TreeProcess proc;  // as /proc shows it, kernel PIDs
  const control::Block* block;
};

// The image of a whole tree (format version 2, image/image.capnp Tree): the tree
// section with every member under its virtual PID, then each live member's
// sections as captureProcess writes them, in one stream. `members[0]` is the root.
// stats add up over the members.
CaptureStats captureTree(kj::ArrayPtr<const TreeCaptureMember> members, image::ByteSink& out,
                         const CaptureOptions& options = {});

// The same image, concurrently (copy_before_write.h): `uffds[i]` is member i's
// copy-on-write userfaultfd (ControlClient::copyOnWrite; -1 for a zombie), owned from
// now on. While the tree is frozen, writes the sections before the members, takes
// every member's state (held in memory) and write-protects its memory; then calls
// `resume` and writes each member's state and memory while they all run. ok false,
// with the reason in `why` and the image unusable, when a member gave memory back
// before it was written out: the caller takes the image again frozen.
struct ConcurrentTreeResult {
  CaptureStats stats{};
  CopyBeforeWriteStats pages;
  bool ok = false;
  kj::String why;
};
ConcurrentTreeResult captureTreeConcurrently(kj::ArrayPtr<const TreeCaptureMember> members, kj::ArrayPtr<int> uffds,
                                             image::ByteSink& out, const CaptureOptions& options,
                                             kj::FunctionParam<void()> resume);

}  // namespace mig::resources
