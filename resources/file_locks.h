// The locks a process holds on its files: flock(2), fcntl record locks (F_SETLK, the
// process's) and OFD locks (F_OFD_SETLK, the open file description's). At checkpoint
// they are read from the "lock:" lines of /proc/PID/fdinfo/FD (the kernel lists there
// the locks taken through that open file by this process or this description) into
// Files.locks; at restart, before any fd is made, each is checked free (no other
// process holds a conflicting one now: one line refuses the restart otherwise), and
// once every fd is at its number each is taken again on its fd before the restorer
// runs. A migrated job's locks stay at home with its deputy, which keeps its open
// files (and so its locks); calls on them after the move go home
// (rsc/forward_calls.def, "file locks"). Page: docs/kinds/file_lock.md.
#pragma once

#include "image/image.capnp.h"

#include <kj/string.h>
#include <kj/vector.h>

#include <cstdint>
#include <string_view>
#include <sys/types.h>

namespace mig::resources::file_locks {

using Kind = image::schema::FileLock::Kind;

// One lock as an fdinfo "lock:" line shows it.
struct Lock {
  Kind kind = Kind::POSIX;
  bool write = false;
  int64_t start = 0;
  int64_t end = -1;  // -1: to the end of the file
};

// Parses the value of one "lock:" line ("1: POSIX  ADVISORY  WRITE 4242 08:01:1234 0
// EOF"). nullptr and `out` filled, or why it is not a lock mig takes again (a lease,
// an unknown form).
const char* parseLine(std::string_view line, Lock& out);

// Fills files.locks from the fdinfo of each fd of `files` that is the first of its
// open file description (dupOf < 0). A lease is not saved: a line in `warnings`.
void capture(pid_t pid, image::schema::Files::Builder files, kj::Vector<kj::String>& warnings);

// Refuses (image::fail, one line naming the fd, its path, the lock and its holder) an
// image with a lock another process holds now. Locks on files reopened by path only
// (a deleted file comes back as a new one nobody else has).
void check(image::schema::Files::Reader files);

// For a tree's image (one files section per member): refuses (one line) an exclusive
// flock or OFD lock that two members held through one open file description they
// shared (each member's fds come back as descriptions of its own, and the second
// could not take it), before anything of the tree runs.
void checkAcrossMembers(kj::ArrayPtr<const image::schema::Files::Reader> members);

// Takes every saved lock again on its fd, which is in place; throws like check() if
// one cannot be taken (someone took it since the check).
void retake(image::schema::Files::Reader files);

// "a WRITE lock (fcntl) on bytes 0-99": the lock for messages.
kj::String describe(const Lock& lock);

}  // namespace mig::resources::file_locks
