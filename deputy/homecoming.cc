// See homecoming.h.
#include "deputy/homecoming.h"

#include "deputy/log.h"
#include "deputy/own_fds.h"
#include "shadow/hex.h"

#include <kj/debug.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

namespace mig::deputy {

void execHomecomingRestart(kj::StringPtr migctl, kj::StringPtr image, kj::StringPtr logPath,
                           kj::ArrayPtr<const kj::byte> carried) {
  // The table, at a number of the deputy's (never one of the job's, which the restart
  // keeps as they are), left open across the exec.
  int raw = memfd_create("mig-carried", MFD_CLOEXEC);
  KJ_REQUIRE(raw >= 0, "cannot make the carried answers' memfd", strerror(errno));
  size_t done = 0;
  while (done < carried.size()) {
    ssize_t n = write(raw, carried.begin() + done, carried.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(raw);
      KJ_FAIL_REQUIRE("cannot write the carried answers", strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  int table = placeOwn(raw);
  KJ_REQUIRE(table >= 0, "cannot place the carried answers' memfd", strerror(errno));
  markOwn(table, false);
  fcntl(table, F_SETFD, 0);

  log(kj::str("the job comes home: becoming it (", image, ", ", carried.size(), " bytes of answers carried)"));
  // Everything of the deputy's goes (event loop, shadowd connection, direct link,
  // copies of watched fds, its log): what is left is the job's.
  std::vector<int> own;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (struct dirent* e = readdir(d)) {
      int fd = atoi(e->d_name);
      if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && fd != dirfd(d) && isOwn(fd)) own.push_back(fd);
    }
    closedir(d);
  }
  for (int fd : own) close(fd);
  unsetenv(shadow::kTokenEnv);  // the job's token is no business of the restart's

  auto tableText = kj::str(table);
  const char* argv[] = {migctl.cStr(), "restart", image.cStr(), "--homecoming", "--data-verified",
                        "--carried-fd", tableText.cStr(), "--homecoming-log", logPath.cStr(), nullptr};
  execv(migctl.cStr(), const_cast<char* const*>(argv));
  // Its connections are closed: the deputy can serve no one now, and the job, ended
  // away, exists only in its image. It ends as a lost job does (killed), so its parent
  // hears of it, with a line in shadowd's restore log.
  int fd = open(logPath.cStr(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) {
    dprintf(fd, "mig-deputy: cannot run %s to come home: %s\n", migctl.cStr(), strerror(errno));
    close(fd);
  }
  kill(getpid(), SIGKILL);
}

}  // namespace mig::deputy
