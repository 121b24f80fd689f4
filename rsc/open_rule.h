// rsc/open_rule.h: which side opens a file that a migrated process opens under a home
// path (one outside Config::localPaths, /proc, /sys and /dev: shim/forward/locality.h):
// the rule, as a pure function. The shim's SIGSYS handler applies it to openat; a
// migration's memory capture (resources/proc_page_source.cc) applies it to the files
// the job has mapped: one it would not open here travels as private memory.
//
//   opened for writing (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_TMPFILE)   home
//   a relative path, a path with "..", O_DIRECTORY, O_PATH             home
//   read-only, under a system directory (kSystemDirs: /usr, /lib*, /bin,
//     /sbin, /opt, /etc)                                               here if the same
//   anything else (the user's files, /home, /srv, /var, /tmp...)       home
//
// "Here if the same" (shim/forward/same_file.h): the shim opens the file here, asks home
// for the size and content hash of its copy (rsc/file_identity.h) and keeps the local
// fd only if they match; otherwise, or if the file is missing here, it opens home's.
// So programs and libraries, which the README requires at the same paths on every
// host, are read and mapped from this host (dlopen after a move works, and runs at
// local speed), while a system file that differs (another version of a library, this
// host's /etc/hostname) is home's, as before the move. Data files are always home's.
// Scratch (/tmp, $TMPDIR) is home's by default like every data directory: a job's
// temporary files then survive the next move; `shadowd --local-path /tmp` makes them
// this host's instead (faster, but left behind by the next move).
//
// Async-signal-safe and header-only: no allocation, no system calls.
#pragma once

#include <cstdint>
#include <fcntl.h>

namespace mig::rsc {

enum class OpenSide : uint8_t {
  Home,            // open it at home (a home fd, mirrored here)
  HereIfSameFile,  // open it here if home's copy is the same file, else at home
};

// The directories whose read-only files are candidates for opening here: where Debian
// installs programs, libraries, their data and the system's configuration.
inline constexpr const char* kSystemDirs[] = {"/usr", "/lib",  "/lib32", "/lib64", "/libx32",
                                              "/bin", "/sbin", "/opt",   "/etc"};

namespace open_rule_detail {
// Is path `dir` itself or under it (dir without a trailing slash)?
constexpr bool under(const char* path, const char* dir) {
  uint32_t i = 0;
  for (; dir[i] != '\0'; ++i) {
    if (path[i] != dir[i]) return false;
  }
  return path[i] == '/' || path[i] == '\0';
}
constexpr bool climbs(const char* p) {
  for (uint32_t i = 0; p[i] != '\0'; ++i) {
    const bool start = i == 0 || p[i - 1] == '/';
    if (start && p[i] == '.' && p[i + 1] == '.' && (p[i + 2] == '/' || p[i + 2] == '\0')) return true;
  }
  return false;
}
}  // namespace open_rule_detail

// Where an open of a home path (openat's path and flags) is made. A null path: home
// (it fails there as it would here).
constexpr OpenSide openSide(const char* path, int64_t flags) {
  using namespace open_rule_detail;
  if (path == nullptr || path[0] != '/') return OpenSide::Home;
  if ((flags & O_ACCMODE) != O_RDONLY) return OpenSide::Home;
  if ((flags & (O_CREAT | O_TRUNC | O_DIRECTORY | O_PATH)) != 0) return OpenSide::Home;
  if ((flags & O_TMPFILE) == O_TMPFILE) return OpenSide::Home;
  if (climbs(path)) return OpenSide::Home;
  for (const char* dir : kSystemDirs) {
    if (under(path, dir)) return OpenSide::HereIfSameFile;
  }
  return OpenSide::Home;
}

}  // namespace mig::rsc
