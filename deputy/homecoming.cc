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

namespace {

// `bytes` in a memfd at a number of the deputy's (never one of the job's, which the
// restart keeps as they are), left open across the exec. Throws if it cannot.
int tableFd(const char* name, kj::ArrayPtr<const kj::byte> bytes) {
  int raw = memfd_create(name, MFD_CLOEXEC);
  KJ_REQUIRE(raw >= 0, "cannot make a memfd", name, strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = write(raw, bytes.begin() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(raw);
      KJ_FAIL_REQUIRE("cannot write a memfd", name, strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  int fd = placeOwn(raw);
  KJ_REQUIRE(fd >= 0, "cannot place a memfd", name, strerror(errno));
  markOwn(fd, false);
  fcntl(fd, F_SETFD, 0);
  return fd;
}

}  // namespace

kj::Array<kj::byte> encodeComeBack(const ComeBack& c) {
  auto text = kj::str("deputy ", c.deputy, "\nlink ", c.linkFd, " ",
                      c.linkKey.size() > 0 ? shadow::hex(c.linkKey) : kj::str("-"), " ", c.linkPlaintext ? 1 : 0, " ",
                      c.linkLostAfterMs, "\njob-id ", c.jobId, "\nsocket ", c.socket, "\ntoken ", shadow::hex(c.token),
                      "\nrecord ", c.record.size(), "\n");
  auto out = kj::heapArray<kj::byte>(text.size() + c.record.size());
  memcpy(out.begin(), text.begin(), text.size());
  if (c.record.size() > 0) memcpy(out.begin() + text.size(), c.record.begin(), c.record.size());
  return out;
}

ComeBack decodeComeBack(kj::ArrayPtr<const kj::byte> bytes) {
  ComeBack c;
  size_t at = 0;
  // The next line's value after "KEY ".
  auto value = [&](const char* key) {
    size_t end = at;
    while (end < bytes.size() && bytes[end] != '\n') ++end;
    KJ_REQUIRE(end < bytes.size(), "the deputy's come-back table ends early", key);
    kj::String line = kj::heapString(reinterpret_cast<const char*>(bytes.begin()) + at, end - at);
    at = end + 1;
    size_t k = strlen(key);
    KJ_REQUIRE(line.size() > k && strncmp(line.cStr(), key, k) == 0 && line[k] == ' ',
               "the deputy's come-back table has no", key);
    return kj::str(line.slice(k + 1));
  };
  c.deputy = value("deputy");
  auto link = value("link");
  char key[129] = {};
  int plaintext = 0;
  unsigned long long lostMs = 0;
  KJ_REQUIRE(sscanf(link.cStr(), "%d %128s %d %llu", &c.linkFd, key, &plaintext, &lostMs) == 4,
             "the deputy's come-back table: a bad link line", link);
  if (c.linkFd >= 0) c.linkKey = shadow::unhex(key);
  c.linkPlaintext = plaintext != 0;
  c.linkLostAfterMs = lostMs;
  c.jobId = strtoull(value("job-id").cStr(), nullptr, 10);
  c.socket = value("socket");
  c.token = shadow::unhex(value("token"));
  size_t n = strtoull(value("record").cStr(), nullptr, 10);
  KJ_REQUIRE(at + n == bytes.size(), "the deputy's come-back table: its record is cut");
  c.record = kj::heapArray<kj::byte>(bytes.slice(at, at + n));
  KJ_REQUIRE(c.jobId != 0 && c.token.size() == 32 && c.socket.size() > 0, "the deputy's come-back table is incomplete");
  return c;
}

void execHomecomingRestart(kj::StringPtr migctl, kj::StringPtr image, kj::StringPtr logPath,
                           kj::ArrayPtr<const kj::byte> carried, kj::Maybe<ComeBack> comeBack, kj::StringPtr fault,
                           kj::StringPtr gate) {
  int table = tableFd("mig-carried", carried);
  int state = -1;
  KJ_IF_MAYBE(c, comeBack) {
    state = tableFd("mig-come-back", encodeComeBack(*c));
    // The ticket's port stays open for the deputy that may come back (its relay resumes
    // the link there); the restart closes it once it gives the deputy up.
    if (c->linkFd >= 0) {
      markOwn(c->linkFd, false);
      fcntl(c->linkFd, F_SETFD, 0);
    }
  }

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

  auto tableText = kj::str(table), stateText = kj::str(state);
  const char* argv[16] = {migctl.cStr(), "restart", image.cStr(), "--homecoming", "--data-verified",
                          "--carried-fd", tableText.cStr(), "--homecoming-log", logPath.cStr()};
  int n = 9;
  if (state >= 0) {
    argv[n++] = "--come-back";
    argv[n++] = stateText.cStr();
  }
  if (fault.size() > 0) {
    argv[n++] = "--fault";
    argv[n++] = fault.cStr();
  }
  if (gate.size() > 0) {
    argv[n++] = "--home-gate";
    argv[n++] = gate.cStr();
  }
  argv[n] = nullptr;
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
