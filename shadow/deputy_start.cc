// See deputy_start.h.
#include "shadow/deputy_start.h"

#include "resources/proc_file.h"
#include "shadow/error.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace mig::shadow {
namespace {

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

kj::String describe(int status) {
  if (WIFSIGNALED(status)) return kj::str("ended by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  return kj::str("exit status ", WEXITSTATUS(status));
}

}  // namespace

kj::String tryDeputyStart(kj::StringPtr deputy, kj::StringPtr socket, int timeoutMs) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return kj::str("cannot make a pipe: ", strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, out[1], 2);
  auto socketText = kj::str(socket);
  char* argv[] = {const_cast<char*>(deputy.cStr()), const_cast<char*>("--check"), const_cast<char*>("--socket"),
                  socketText.begin(), nullptr};
  pid_t pid = -1;
  int err = posix_spawn(&pid, deputy.cStr(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (err != 0) {
    close(out[0]);
    return kj::str("cannot run ", deputy, ": ", strerror(err));
  }
  // Its line (if any) until it ends, which closes the pipe.
  char said[512];
  size_t saidLen = 0;
  const int64_t deadline = nowMs() + timeoutMs;
  bool timedOut = false;
  for (;;) {
    int64_t left = deadline - nowMs();
    struct pollfd p = {out[0], POLLIN, 0};
    int r = left > 0 ? poll(&p, 1, static_cast<int>(left)) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      timedOut = true;
      break;
    }
    ssize_t n = read(out[0], said + saidLen, sizeof(said) - 1 - saidLen);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    saidLen += static_cast<size_t>(n);
    if (saidLen == sizeof(said) - 1) saidLen = 0;  // only its last words matter
  }
  close(out[0]);
  if (timedOut) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timedOut) return kj::str("it did not start within ", timeoutMs / 1000.0, " s");
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return kj::str("");
  said[saidLen] = '\0';
  while (saidLen > 0 && (said[saidLen - 1] == '\n' || said[saidLen - 1] == ' ')) said[--saidLen] = '\0';
  const char* line = strrchr(said, '\n');
  line = line != nullptr ? line + 1 : said;
  return *line != '\0' ? kj::str(line, " (", describe(status), ")") : describe(status);
}

DeputyReady::DeputyReady() {
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) fail(kj::str("cannot make the deputy's ready socket: ", strerror(errno)));
  name_ = kj::str("mig/", getuid(), "/deputy-ready/", getpid());
  struct sockaddr_un sa {};
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path + 1, name_.begin(), name_.size());
  socklen_t len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + 1 + name_.size());
  if (bind(fd_, reinterpret_cast<struct sockaddr*>(&sa), len) != 0 || listen(fd_, 4) != 0) {
    int e = errno;
    close(fd_);
    fd_ = -1;
    fail(kj::str("cannot listen for the deputy's start: ", strerror(e)));
  }
}

DeputyReady::~DeputyReady() {
  if (fd_ >= 0) close(fd_);
}

DeputyReady::Outcome DeputyReady::wait(pid_t pid, int timeoutMs) {
  const int64_t deadline = nowMs() + timeoutMs;
  for (;;) {
    // Anyone of this user could connect (an abstract name has no permissions): only the
    // job's process counts.
    for (;;) {
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) break;
      struct ucred cred {};
      socklen_t credLen = sizeof(cred);
      char word = 0;
      struct pollfd p = {c, POLLIN, 0};
      bool ours = getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &credLen) == 0 && cred.pid == pid &&
                  poll(&p, 1, 1000) == 1 && read(c, &word, 1) == 1 && word == 'R';
      close(c);
      if (ours) return Outcome::REGISTERED;
    }
    if (!resources::processRuns(pid)) return Outcome::DIED;
    int64_t left = deadline - nowMs();
    if (left <= 0) return Outcome::SLOW;
    struct pollfd p = {fd_, POLLIN, 0};
    poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 50)));  // a death is looked for every 50 ms
  }
}

}  // namespace mig::shadow
