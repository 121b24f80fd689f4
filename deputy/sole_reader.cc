// Looking for another reader of a stream at home in /proc (sole_reader.h).
#include "deputy/sole_reader.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

namespace mig::deputy {
namespace {

// A /proc fd link names the file: "pipe:[INODE]", "socket:[INODE]", or a path.
struct Link {
  char text[64];
  ssize_t size;
};

bool readLink(int dir, const char* name, Link& l) {
  l.size = readlinkat(dir, name, l.text, sizeof(l.text) - 1);
  if (l.size < 0) return false;
  l.text[l.size] = '\0';
  return true;
}

// Whether fd `name` of process `pid` (the write end or the read end of a pipe) may read:
// "flags:" in its fdinfo, octal; unknown counts as reading.
bool readsPipe(pid_t pid, const char* name) {
  char path[320];
  snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", pid, name);
  const int f = open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return errno != ENOENT;  // closed meanwhile: not a reader
  char text[256];
  const ssize_t n = read(f, text, sizeof(text) - 1);
  close(f);
  if (n <= 0) return true;
  text[n] = '\0';
  const char* flags = strstr(text, "flags:");
  if (flags == nullptr) return true;
  return (strtoul(flags + 6, nullptr, 8) & O_ACCMODE) != O_WRONLY;
}

// A process whose fds the deputy may not list (another user's, or a set-user-ID
// program's) may hold the stream if it runs under one of the deputy's user ids: one
// the stream was inherited by. One of none of them is not looked into (sole_reader.h).
bool mayHoldUnseen(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  FILE* f = fopen(path, "re");
  if (f == nullptr) return errno != ENOENT;
  char line[256];
  bool ours = true;  // no Uid line: cannot say
  while (fgets(line, sizeof(line), f) != nullptr) {
    unsigned long ids[4];
    if (sscanf(line, "Uid: %lu %lu %lu %lu", &ids[0], &ids[1], &ids[2], &ids[3]) != 4) continue;
    ours = false;
    for (unsigned long id : ids) ours = ours || id == getuid() || id == geteuid();
    break;
  }
  fclose(f);
  return ours;
}

// Whether `link` names a pipe (else a socket; else neither: false).
bool isStream(const Link& l, bool& pipe) {
  pipe = strncmp(l.text, "pipe:[", 6) == 0;
  return pipe || strncmp(l.text, "socket:[", 8) == 0;
}

}  // namespace

bool SoleReaders::look() {
  DIR* self = opendir("/proc/self/fd");
  if (self == nullptr) return false;
  Link l;
  bool pipe;
  while (struct dirent* e = readdir(self)) {
    if (e->d_name[0] != '.' && readLink(dirfd(self), e->d_name, l) && isStream(l, pipe)) others_.emplace(l.text, 0);
  }
  closedir(self);
  DIR* all = opendir("/proc");
  if (all == nullptr) return false;
  const pid_t me = getpid();
  while (struct dirent* e = readdir(all)) {
    char* end = nullptr;
    const long pid = strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || pid == me) continue;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
    const int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
      if (errno != ENOENT && errno != ESRCH && mayHoldUnseen(static_cast<pid_t>(pid))) {
        for (auto& [name, other] : others_) {  // it may hold any of them
          if (other == 0) other = static_cast<pid_t>(pid);
        }
      }
      continue;
    }
    DIR* fds = fdopendir(dir);
    if (fds == nullptr) {
      close(dir);
      continue;
    }
    while (struct dirent* f = readdir(fds)) {
      if (f->d_name[0] == '.' || !readLink(dir, f->d_name, l) || !isStream(l, pipe)) continue;
      auto it = others_.find(l.text);
      if (it != others_.end() && it->second == 0 && (!pipe || readsPipe(static_cast<pid_t>(pid), f->d_name))) {
        it->second = static_cast<pid_t>(pid);
      }
    }
    closedir(fds);
  }
  closedir(all);
  return true;
}

pid_t SoleReaders::otherReader(int fd) {
  char path[32];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  Link l;
  bool pipe;
  if (!readLink(AT_FDCWD, path, l) || !isStream(l, pipe)) return -1;  // a named FIFO: anyone may open it
  if (!looked_) {
    if (!look()) return -1;
    looked_ = true;
  }
  auto it = others_.find(l.text);
  return it == others_.end() ? 0 : it->second;  // not held at the look: made by the deputy since
}

}  // namespace mig::deputy
