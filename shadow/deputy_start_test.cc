// The deputy's start as a hop's sender sees it (deputy_start.h): the trial start's
// verdict and line, and the registered word heard only from the job's process, or
// its death seen.
#include "shadow/deputy_start.h"

#include <doctest/doctest.h>
#include <kj/function.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

// Says 'R' on `name` (as deputy/main.cc --ready does), from the calling process.
bool sayReady(kj::StringPtr name) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa {};
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path + 1, name.begin(), name.size());
  const char word = 'R';
  bool ok = connect(fd, reinterpret_cast<struct sockaddr*>(&sa),
                    static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + 1 + name.size())) == 0 &&
            write(fd, &word, 1) == 1;
  close(fd);
  return ok;
}

pid_t forkDoing(kj::Function<void()> f) {
  pid_t pid = fork();
  if (pid == 0) {
    f();
    _exit(0);
  }
  return pid;
}

TEST_CASE("trial start: its exit decides, its last line says why") {
  CHECK(tryDeputyStart("/bin/true", "/nonexistent.sock", 5000) == "");
  CHECK(tryDeputyStart("/bin/false", "/nonexistent.sock", 5000) == "exit status 1");
  auto missing = tryDeputyStart("/nonexistent/mig-deputy", "/x.sock", 5000);
  CHECK(missing.size() > 0);
  // /bin/sh -c 'SCRIPT' --check --socket S: the script's words are its line.
  char script[] = "/tmp/mig-deputy-start-test-XXXXXX";
  int fd = mkstemp(script);
  REQUIRE(fd >= 0);
  const char text[] = "#!/bin/sh\necho starting\necho cannot reach shadowd >&2\nexit 3\n";
  REQUIRE(write(fd, text, sizeof(text) - 1) == static_cast<ssize_t>(sizeof(text) - 1));
  close(fd);
  chmod(script, 0700);
  CHECK(tryDeputyStart(script, "/x.sock", 5000) == "cannot reach shadowd (exit status 3)");
  const char hang[] = "#!/bin/sh\nexec sleep 30\n";
  fd = open(script, O_WRONLY | O_TRUNC);
  REQUIRE(write(fd, hang, sizeof(hang) - 1) == static_cast<ssize_t>(sizeof(hang) - 1));
  close(fd);
  CHECK(tryDeputyStart(script, "/x.sock", 200) == "it did not start within 0.2 s");
  unlink(script);
}

TEST_CASE("ready: the job's process's word, its death, or neither in time") {
  {
    DeputyReady ready;
    auto name = kj::str(ready.name());
    pid_t pid = forkDoing([&]() { sayReady(name); pause(); });
    CHECK(ready.wait(pid, 5000) == DeputyReady::Outcome::REGISTERED);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  {
    // Another process's word does not count; the job's process dying does.
    DeputyReady ready;
    auto name = kj::str(ready.name());
    pid_t job = forkDoing([]() { usleep(300 * 1000); });
    pid_t other = forkDoing([&]() { sayReady(name); });
    waitpid(other, nullptr, 0);
    CHECK(ready.wait(job, 5000) == DeputyReady::Outcome::DIED);
    waitpid(job, nullptr, 0);
  }
  {
    DeputyReady ready;
    pid_t job = forkDoing([]() { pause(); });
    CHECK(ready.wait(job, 200) == DeputyReady::Outcome::SLOW);
    kill(job, SIGKILL);
    waitpid(job, nullptr, 0);
  }
}

}  // namespace
}  // namespace mig::shadow
