// See file_locks.h.
#include "resources/file_locks.h"

#include "image/image_error.h"
#include "resources/fd_kind.h"
#include "resources/proc_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <vector>

namespace mig::resources::file_locks {
namespace {

using image::fail;

// The next blank-separated word of `s`, consumed.
std::string_view word(std::string_view& s) {
  s = fdinfo::trimLeft(s);
  size_t n = 0;
  while (n < s.size() && s[n] != ' ' && s[n] != '\t' && s[n] != '\n') ++n;
  std::string_view w = s.substr(0, n);
  s.remove_prefix(n);
  return w;
}

bool toInt(std::string_view w, int64_t& out) {
  std::string_view s = w;
  return fdinfo::number(s, 10, out) && s.empty();
}

const char* kindName(Kind k) {
  switch (k) {
    case Kind::POSIX: return "fcntl";
    case Kind::OFD: return "OFD";
    case Kind::FLOCK: return "flock";
  }
  return "?";
}

// The fcntl lock of `lock`, for F_SETLK / F_OFD_SETLK / their GETLK.
struct flock asFlock(const Lock& lock) {
  struct flock fl {};
  fl.l_type = lock.write ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = lock.start;
  fl.l_len = lock.end < 0 ? 0 : lock.end - lock.start + 1;
  return fl;
}

Lock fromRecord(image::schema::FileLock::Reader r) {
  return Lock{r.getKind(), r.getWrite(), r.getStart(), r.getEnd()};
}

// The PIDs /proc/locks names as holding a flock on the file `fd` is open on, but ours.
std::string flockHolders(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return "";
  char id[64];
  snprintf(id, sizeof(id), "%02x:%02x:%lu", major(st.st_dev), minor(st.st_dev), static_cast<unsigned long>(st.st_ino));
  std::ifstream in("/proc/locks");
  std::string line, pids;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string n, type, adv, mode, pid, file;
    words >> n >> type >> adv >> mode >> pid >> file;
    if (type != "FLOCK" || file != id || pid == std::to_string(getpid())) continue;
    pids += (pids.empty() ? "" : ", ") + pid;
  }
  return pids;
}

// Who holds what conflicts with `lock` on `fd` now, for the refusal: "PID 4242",
// "another open file description (an OFD lock names no process)", or "" if no one.
std::string holder(int fd, const Lock& lock) {
  if (lock.kind == Kind::FLOCK) {
    // A trial on an open file description of our own: flock locks conflict only with
    // flock locks.
    std::string self = "/proc/self/fd/" + std::to_string(fd);
    int probe = open(self.c_str(), O_RDONLY | O_CLOEXEC);
    if (probe < 0) return "";
    const bool free = flock(probe, (lock.write ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0;
    close(probe);  // releases the trial lock with its description
    if (free) return "";
    std::string pids = flockHolders(fd);
    return pids.empty() ? "another process" : "PID " + pids;
  }
  // F_OFD_GETLK tests against every fcntl lock of others, POSIX and OFD alike.
  struct flock fl = asFlock(lock);
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0 || fl.l_type == F_UNLCK) return "";
  if (fl.l_pid > 0) return "PID " + std::to_string(fl.l_pid);
  return "another open file description (an OFD lock names no process)";
}

[[noreturn]] void refuse(int fd, kj::StringPtr path, const Lock& lock, const std::string& who) {
  fail(kj::str("fd ", fd, " (", path, "): ", describe(lock), " the process held cannot be taken again: ",
               who.c_str(), " holds a lock in its way; end it (or let it release its lock) and restart again"));
}

kj::StringPtr pathOf(image::schema::Files::Reader files, int fd) {
  for (auto f : files.getFds()) {
    if (f.getFd() == fd) return f.getPath();
  }
  return "?";
}

}  // namespace

const char* parseLine(std::string_view line, Lock& out) {
  std::string_view s = line;
  std::string_view id = word(s), type = word(s);
  if (id.empty() || id.back() != ':') return "no lock id";
  if (type == "POSIX") out.kind = Kind::POSIX;
  else if (type == "OFDLCK") out.kind = Kind::OFD;
  else if (type == "FLOCK") out.kind = Kind::FLOCK;
  else if (type == "LEASE" || type == "DELEG" || type == "BREAKING" || type == "ACTIVE" || type == "BREAKER")
    return "a lease (fcntl F_SETLEASE), which mig does not take again";
  else return "a lock of a kind mig does not know";
  std::string_view mode = word(s);
  if (mode != "ADVISORY") return "not an advisory lock";
  std::string_view rw = word(s);
  if (rw == "WRITE") out.write = true;
  else if (rw == "READ") out.write = false;
  else return "neither a read nor a write lock";
  word(s);  // the PID that took it
  word(s);  // the file: major:minor:inode
  std::string_view start = word(s), end = word(s);
  if (!toInt(start, out.start) || out.start < 0) return "no start offset";
  if (end == "EOF") out.end = -1;
  else if (!toInt(end, out.end) || out.end < out.start) return "no end offset";
  if (out.kind == Kind::FLOCK) out.start = 0, out.end = -1;
  return nullptr;
}

kj::String describe(const Lock& lock) {
  const char* mode = lock.write ? "a WRITE" : "a READ";
  if (lock.kind == Kind::FLOCK) return kj::str(mode, " lock (flock)");
  if (lock.end < 0) return kj::str(mode, " lock (", kindName(lock.kind), ") on bytes ", lock.start, " to the end");
  return kj::str(mode, " lock (", kindName(lock.kind), ") on bytes ", lock.start, "-", lock.end);
}

void capture(pid_t pid, image::schema::Files::Builder files, kj::Vector<kj::String>& warnings) {
  struct Found {
    int fd;
    Lock lock;
  };
  std::vector<Found> found;
  for (auto f : files.getFds()) {
    if (f.getDupOf() >= 0) continue;  // its dups show the same locks
    const std::string info = fdinfo::read(pid, f.getFd());
    forEachLine(info, [&](std::string_view line) {
      if (line.substr(0, 5) != "lock:") return;
      line.remove_prefix(5);
      Lock lock;
      if (const char* why = parseLine(line, lock)) {
        warnings.add(kj::str("fd ", f.getFd(), " (", f.getPath(), "): ", why, ": not saved"));
      } else {
        found.push_back({f.getFd(), lock});
      }
    });
  }
  auto out = files.initLocks(static_cast<unsigned>(found.size()));
  for (size_t i = 0; i < found.size(); ++i) {
    out[i].setFd(found[i].fd);
    out[i].setKind(found[i].lock.kind);
    out[i].setWrite(found[i].lock.write);
    out[i].setStart(found[i].lock.start);
    out[i].setEnd(found[i].lock.end);
  }
}

void check(image::schema::Files::Reader files) {
  // One pass over the fds (the reader's traversal limit counts every pass).
  struct Saved {
    std::string path;
    bool reopened;
  };
  if (files.getLocks().size() == 0) return;  // most images: no pass over the fds (the
                                             // reader's traversal limit counts each)
  std::map<int, Saved> first;
  for (auto f : files.getFds()) {
    if (f.getDupOf() >= 0) continue;
    first[f.getFd()] = {f.getPath().cStr(), f.getKind() == image::schema::FileDescriptor::Kind::FILE};
  }
  for (auto r : files.getLocks()) {
    auto it = first.find(r.getFd());
    if (it == first.end()) fail(kj::str("the image names a lock on fd ", r.getFd(), ", which it does not hold"));
    const Lock lock = fromRecord(r);
    if (lock.start < 0 || (lock.end >= 0 && lock.end < lock.start)) {
      fail(kj::str("the image names a lock on fd ", r.getFd(), " with a bad range"));
    }
    if (!it->second.reopened) continue;  // made anew: no one else has it
    int fd = open(it->second.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) continue;  // the file check says what is wrong with it
    const std::string who = holder(fd, lock);
    close(fd);
    if (!who.empty()) refuse(r.getFd(), it->second.path.c_str(), lock, who);
  }
}

void checkAcrossMembers(kj::ArrayPtr<const image::schema::Files::Reader> members) {
  struct Key {
    uint64_t device, inode;
    Kind kind;
    bool operator<(const Key& o) const {
      return device != o.device ? device < o.device : inode != o.inode ? inode < o.inode : kind < o.kind;
    }
  };
  std::map<Key, size_t> heldBy;  // -> the member's index
  for (size_t m = 0; m < members.size() && members.size() > 1; ++m) {
    bool exclusive = false;
    for (auto r : members[m].getLocks()) exclusive = exclusive || (r.getWrite() && r.getKind() != Kind::POSIX);
    if (!exclusive) continue;
    struct Id {
      uint64_t device, inode;
      kj::StringPtr path;
    };
    std::map<int, Id> ids;  // by fd
    for (auto f : members[m].getFds()) {
      if (f.getDupOf() < 0) ids[f.getFd()] = {f.getFile().getDevice(), f.getFile().getInode(), f.getPath()};
    }
    for (auto r : members[m].getLocks()) {
      if (!r.getWrite() || r.getKind() == Kind::POSIX) continue;  // the process's own, or shared ones
      auto id = ids.find(r.getFd());
      if (id == ids.end() || id->second.inode == 0) continue;
      auto [it, fresh] = heldBy.emplace(Key{id->second.device, id->second.inode, r.getKind()}, m);
      if (!fresh && it->second != m) {
        fail(kj::str("fd ", r.getFd(), " (", id->second.path, "): ", describe(fromRecord(r)), " is held by two members of the tree through "
                     "one open file description they share, which a restart makes two: each member would need it; "
                     "not supported (checkpoint the process that took it alone, with --only)"));
      }
    }
  }
}

void retake(image::schema::Files::Reader files) {
  for (auto r : files.getLocks()) {
    const Lock lock = fromRecord(r);
    const int fd = r.getFd();
    int rc;
    if (lock.kind == Kind::FLOCK) {
      rc = flock(fd, (lock.write ? LOCK_EX : LOCK_SH) | LOCK_NB);
    } else {
      struct flock fl = asFlock(lock);
      rc = fcntl(fd, lock.kind == Kind::OFD ? F_OFD_SETLK : F_SETLK, &fl);
    }
    if (rc == 0) continue;
    const int err = errno;
    if (err == EAGAIN || err == EACCES || err == EWOULDBLOCK) {
      std::string who = holder(fd, lock);
      refuse(fd, pathOf(files, fd), lock, who.empty() ? "another process" : who);
    }
    fail(kj::str("fd ", fd, " (", pathOf(files, fd), "): cannot take ", describe(lock), " again: ", strerror(err)));
  }
}

}  // namespace mig::resources::file_locks
