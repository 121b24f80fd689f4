// The file identity check of a migrated process (rsc/open_rule.h's "here if the same"):
// opens a system file on this host only when home's copy has the same size and content
// hash (rsc/file_identity.h). The hashes of this host's files are cached in
// State::localHashes per (device, inode, size, mtime); home's in the deputy. Runs in
// the SIGSYS handler: raw system calls, no allocation, no locks.
#pragma once

#include <cstdint>

namespace mig::forward {

// Result of openHereIfSame when the file must be opened at home instead.
inline constexpr long kOpenAtHome = -(1l << 40);

// openat(AT_FDCWD, path, flags, mode) here if `path` (absolute) names a regular file
// here whose content is the same as home's: the new local fd, or the error of the local
// open if it failed after the check. kOpenAtHome when the file is missing here, not a
// regular file, differs from home's, or home cannot tell (missing there, no answer).
long openHereIfSame(const char* path, int64_t flags, int64_t mode);

// The identity of the regular file open at `fd` on this host (hashed, or found in the
// cache): 0, or a negative errno. For openHereIfSame and its benchmark.
struct FileIdentityHere {
  uint64_t size, hash;
};
long identityHere(int fd, FileIdentityHere& out);

}  // namespace mig::forward
