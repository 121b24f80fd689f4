// The one interface every kind of open fd implements (one file each in resources/,
// listed in fd_kinds.cc; docs/kinds/ has a page for each). The checkpoint's fd walk
// (fd_capture.cc) and the restart's (fd_restore.cc) know nothing of any kind: they
// ask the list which kind an fd is and call its operations.
#pragma once

#include "image/image.capnp.h"
#include "resources/caller_fds.h"
#include "shim/forward/forward_config.h"

#include <kj/array.h>
#include <kj/function.h>
#include <kj/io.h>
#include <kj/string.h>
#include <kj/vector.h>

#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <string>
#include <sys/stat.h>
#include <sys/types.h>

namespace mig::resources {

using FdRecord = image::schema::FileDescriptor;

// An fd of the process being checkpointed, as /proc/PID/fd and fdinfo show it.
struct FdProbe {
  int fd;
  std::string target;  // the /proc/PID/fd link as read ("pipe:[123]", "/x (deleted)", ...)
  std::string path;    // target without " (deleted)"
  bool deleted;        // the link ended in " (deleted)"
  uint32_t flags;      // fdinfo "flags:" (open(2) flags, O_CLOEXEC included)
  int64_t pos;         // fdinfo "pos:"
  struct stat st;      // stat(2) through the link; zeros where it failed
};

// What the one who asks for the image decides about it.
struct CaptureOptions {
  // The image goes to another host, where the job's home files stay at home with its
  // deputy (a deleted file's contents are not needed there).
  bool forMigration = false;
  // The largest deleted file whose contents a checkpoint keeps (migctl checkpoint
  // --max-deleted-file); a Cap'n Proto Data field holds less than 512 MiB.
  uint64_t maxDeletedFileBytes = kDefaultMaxDeletedFileBytes;
  static constexpr uint64_t kDefaultMaxDeletedFileBytes = 256ull << 20;
  static constexpr uint64_t kMaxDeletedFileMiB = 511;
  // Called as each part of a capture ends ("state", "memory"), for a hop's breakdown
  // of its freeze (shadow/hop_times.h); none where nobody measures.
  kj::Function<void(const char* phase)>* mark = nullptr;
};

// What the checkpoint's walk gives a kind besides the fd itself.
struct CaptureContext {
  pid_t pid;                          // the parked process, as the kernel knows it
  kj::ArrayPtr<const FdProbe> all;    // every fd that goes into the image, by number
  CaptureOptions options{};
  std::string linkOf(int fd) const;   // "/proc/PID/fd/N": opens the process's file
  int pidfd = -1;                     // pidfd_open(pid): pidfd_getfd copies of its fds (sockets)
  kj::Vector<kj::String>* warnings = nullptr;  // what the checkpoint must tell its user (one
                                      // line each, naming the fd): state it does not save
  void warn(kj::String line) const {  // one such line, where someone listens
    if (warnings != nullptr) warnings->add(kj::mv(line));
  }
  kj::Vector<int>* connections = nullptr;  // TCP connections not saved (their fds)
  // In a tree's checkpoint, the pipes (by inode) between its members: saved once for
  // the tree (process_capture.cc), each end a `pipe` record naming it; and, as
  // kTreeSocket | inode, every socket a member holds (a socketpair end whose peer is
  // in another member is a `unixSocket` record as within one process). Null: none.
  const std::set<uint64_t>* treePipes = nullptr;
};

// What the restart's check gets besides the record.
struct CheckContext {
  bool force = false;                 // the user accepts files that changed (--force)
  bool migrated = false;              // the job's home files stay at home: not checked here
  kj::ArrayPtr<const int32_t> fds;    // every fd number of the image, sorted
  kj::StringPtr section;              // "section 5 (files) at byte 4096": for invalidRecord()
};

// A tree's shared pipes at its restart, made once before its members are forked and
// inherited by all: pipe id -> (read end, write end), both above every saved number;
// and its socketpairs between members: kTreeSocket | an end's inode -> (that end, -1).
using TreePipes = std::map<uint64_t, std::pair<int, int>>;
inline constexpr uint64_t kTreeSocket = 1ull << 62;

// What the restart's walk gives a kind. The walk runs in migctl restart, before it
// execs the restorer: fds made here are inherited by the restored process.
struct RestoreContext {
  kj::ArrayPtr<const FdRecord::Reader> all;  // every record of the image, by number
  int maxFd;                          // highest saved number: above it an fd stays out of the way
  int warnFd;                         // migctl's own stderr, for warnings that do not stop the restart
  const forward::Config* migrated;    // the migrated job's forwarding state, null on a restart
  const CallerFds& caller;            // what migctl's caller gave it: the only fds that may
                                      // stand in for a saved home stream (never migctl's own)
  // Fds a kind made for a later record and parks above maxFd (a pipe's other end),
  // by the kind's own key; the walk closes what is left at the end.
  std::map<uint64_t, kj::AutoCloseFd> parked;
  const TreePipes* treePipes = nullptr;  // restarting a tree member: its shared pipes
};

// Where an fd of this kind lives once its job migrated away from home.
enum class OnMigration {
  recreated,     // made anew on the new host from the image, like at a restart
  home,          // stays at home, held by the deputy; calls on it are forwarded;
                 // the job gets /dev/null as its stand-in
  homeStream,    // as home, and it is a stream (terminal, socket, pipe to another
                 // process): data is relayed, writes pipelined, and the stand-in tells
                 // readiness (shim/forward/readiness_stand_in.h)
};

// One kind of fd. Like CRIU's struct file_desc_ops (criu/include/files.h), a plain
// table of operations; each kind file defines one constant of it.
//
// - matches: is the fd described by `probe` of this kind? Asked in the order of the
//   list (fd_kinds.cc) and the first kind that says yes takes the fd, so a kind may
//   rely on the ones before it having said no; the last kind takes everything.
// - capture: fills the kind's group of `out` (fd, kind, path, flags, cloexec, offset
//   and dupOf are already set) for the first fd of an open file description only;
//   a dup() of it carries the generic fields and the kind, and is restored as a dup.
//   Null: the kind has nothing of its own to save. Throws (image::fail, one line
//   naming the fd) when the fd cannot be saved: the checkpoint fails, the process
//   goes on untouched.
// - check: at restart, before any fd is made: the record's own metadata is sane
//   (what a reader cannot know without knowing the kind), and for kinds that reopen
//   something, that it is still there and unchanged. Called for every record, dups
//   too. Throws with one line naming the fd. Null: nothing to check.
// - restore: makes the fd of a record with dupOf < 0 and leaves it at number
//   f.getFd(), not close-on-exec (the restorer sets the saved flag after its exec).
//   Not called for a record that stays at home on migration (onMigration).
// - settle: once every fd of the image is at its number, for state that names other
//   fds by number (registrations of one fd on others). Called once for the whole
//   image. Null: nothing.
// - movesWithTree: for a kind that stays at home on migration, whether this record
//   (dupOf < 0) was made away and moves with its tree all the same, made anew where
//   the tree lands (restore is called for it): a socketpair of a job and its children
//   born away. Asked only at a tree's restart. Null: never.
struct FdKind {
  FdRecord::Kind kind;                 // the image's enum value (one FdKind per value)
  const char* name;                    // its page in docs/kinds/ is NAME.md
  OnMigration onMigration;
  bool (*matches)(const FdProbe& probe, const CaptureContext& ctx);
  void (*capture)(const FdProbe& probe, const CaptureContext& ctx, FdRecord::Builder out) = nullptr;
  void (*check)(FdRecord::Reader f, const CheckContext& ctx) = nullptr;
  void (*restore)(FdRecord::Reader f, RestoreContext& ctx);
  void (*settle)(RestoreContext& ctx) = nullptr;
  bool (*movesWithTree)(FdRecord::Reader f) = nullptr;
};

}  // namespace mig::resources
