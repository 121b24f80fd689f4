// See caller_fds.h.
#include "resources/caller_fds.h"

#include <cstdlib>
#include <dirent.h>
#include <sys/stat.h>

namespace mig::resources {

CallerFds CallerFds::atStartup() {
  kj::Vector<CallerFd> fds;
  auto add = [&](int fd) {
    struct stat st {};
    if (fstat(fd, &st) == 0) fds.add(CallerFd{fd, st.st_dev, st.st_ino});
  };
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) {
    for (int fd = 0; fd < 3; ++fd) add(fd);
    return CallerFds(kj::mv(fds));
  }
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    int fd = atoi(e->d_name);
    if (fd != dirfd(d)) add(fd);
  }
  closedir(d);
  return CallerFds(kj::mv(fds));
}

bool CallerFds::inherited(int fd, const struct stat* now) const {
  if (now == nullptr) return false;
  for (const CallerFd& c : fds_) {
    if (c.fd == fd) return c.dev == now->st_dev && c.ino == now->st_ino;
  }
  return false;
}

bool CallerFds::inherited(int fd) const {
  struct stat st {};
  return inherited(fd, fstat(fd, &st) == 0 ? &st : nullptr);
}

}  // namespace mig::resources
