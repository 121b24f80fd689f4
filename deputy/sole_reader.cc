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

bool holds(pid_t pid, const Link& stream, bool pipe) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/fd", pid);
  const int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return errno != ENOENT && errno != ESRCH && mayHoldUnseen(pid);
  DIR* d = fdopendir(dir);
  if (d == nullptr) {
    close(dir);
    return true;
  }
  bool found = false;
  Link l;
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] == '.' || !readLink(dir, e->d_name, l)) continue;
    if (l.size == stream.size && memcmp(l.text, stream.text, l.size) == 0 && (!pipe || readsPipe(pid, e->d_name))) {
      found = true;
      break;
    }
  }
  closedir(d);
  return found;
}

}  // namespace

pid_t otherReader(int fd) {
  char name[16];
  snprintf(name, sizeof(name), "%d", fd);
  const int self = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (self < 0) return -1;
  Link stream;
  const bool linked = readLink(self, name, stream);
  close(self);
  if (!linked) return -1;
  const bool pipe = strncmp(stream.text, "pipe:[", 6) == 0;
  if (!pipe && strncmp(stream.text, "socket:[", 8) != 0) return -1;  // a named FIFO: anyone may open it
  DIR* all = opendir("/proc");
  if (all == nullptr) return -1;
  const pid_t me = getpid();
  pid_t other = 0;
  while (struct dirent* e = readdir(all)) {
    char* end = nullptr;
    const long pid = strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || pid == me) continue;
    if (holds(static_cast<pid_t>(pid), stream, pipe)) {
      other = static_cast<pid_t>(pid);
      break;
    }
  }
  closedir(all);
  return other;
}

}  // namespace mig::deputy
