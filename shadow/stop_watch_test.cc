// startStopWatch: a deputy-like process (a thread named mig-stopwatch that blocks every
// signal) stopped with SIGSTOP is reported at once, its parent still sees the stop and
// the continue, signals still reach its other threads, and the helper ends with it; a
// thread traced already (a debugger) is refused in the helper's first word.
#include "shadow/stop_watch.h"

#include <doctest/doctest.h>

#include <kj/async-io.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

int g_out = -1;  // the child's pipe to the test

// As deputy/signals.cc startStopWatchThread does.
void* stopWatchThread(void*) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  prctl(PR_SET_NAME, "mig-stopwatch", 0, 0, 0);
  (void)!write(g_out, "r", 1);
  for (;;) pause();
}

// A child with (or without) the thread; its main thread answers SIGUSR1 with a 'u'.
pid_t startDeputyLike(bool withThread, int& fromChild) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    g_out = p[1];
    signal(SIGUSR1, [](int) { (void)!write(g_out, "u", 1); });
    pthread_t t;
    if (withThread) pthread_create(&t, nullptr, stopWatchThread, nullptr);
    else (void)!write(g_out, "r", 1);
    for (;;) pause();
  }
  close(p[1]);
  fromChild = p[0];
  char c = 0;
  REQUIRE(read(fromChild, &c, 1) == 1);
  CHECK(c == 'r');
  return pid;
}

// A child of startDeputyLike, killed and reaped and its pipe closed however the case
// ends (a failed REQUIRE or FAIL leaves it by an exception), unless the case reaped it
// itself (pid -1 then).
struct DeputyLike {
  int fromChild = -1;
  pid_t pid;
  explicit DeputyLike(bool withThread) : pid(startDeputyLike(withThread, fromChild)) {}
  ~DeputyLike() {
    end();
    close(fromChild);
  }
  void end() {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    pid = -1;
  }
  KJ_DISALLOW_COPY(DeputyLike);
};

char nextReport(kj::AsyncIoContext& io, kj::AsyncInputStream& in) {
  char c = 0;
  auto n = io.provider->getTimer().timeoutAfter(10 * kj::SECONDS, in.tryRead(&c, 1, 1)).wait(io.waitScope);
  return n == 1 ? c : '\0';
}

TEST_CASE("stop watch: a SIGSTOP is reported at once, the parent sees the stop and the continue") {
  alarm(60);
  auto io = kj::setupAsyncIo();
  DeputyLike child(true);
  const pid_t deputy = child.pid;
  kj::String why;
  auto maybeWatch = startStopWatch(*io.lowLevelProvider, deputy, why);
  KJ_IF_MAYBE(watch, maybeWatch) {
    CHECK(nextReport(io, *watch->reports) == 'A');  // its first word: it traces the thread
    CHECK(stopWatchRunning(deputy));  // watched once: a second startStopWatch is not made
    // Signals still reach the process's other threads, and the helper says nothing.
    kill(deputy, SIGUSR1);
    char c = 0;
    REQUIRE(read(child.fromChild, &c, 1) == 1);
    CHECK(c == 'u');

    kill(deputy, SIGSTOP);
    CHECK(nextReport(io, *watch->reports) == 'S');
    int status = 0;
    REQUIRE(waitpid(deputy, &status, WUNTRACED) == deputy);
    CHECK(WIFSTOPPED(status));
    CHECK(WSTOPSIG(status) == SIGSTOP);

    kill(deputy, SIGCONT);
    CHECK(nextReport(io, *watch->reports) == 'C');
    REQUIRE(waitpid(deputy, &status, WCONTINUED) == deputy);
    CHECK(WIFCONTINUED(status));

    // A second stop, as the first.
    kill(deputy, SIGSTOP);
    CHECK(nextReport(io, *watch->reports) == 'S');
    REQUIRE(waitpid(deputy, &status, WUNTRACED) == deputy);
    CHECK(WIFSTOPPED(status));

    // Killed while stopped: the parent sees the kill, the helper ends (EOF).
    kill(deputy, SIGKILL);
    REQUIRE(waitpid(deputy, &status, 0) == deputy);
    child.pid = -1;
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    char rest[8];
    CHECK(io.provider->getTimer().timeoutAfter(10 * kj::SECONDS, watch->reports->tryRead(rest, 1, sizeof rest))
              .wait(io.waitScope) == 0);
    REQUIRE(waitpid(watch->helper, &status, 0) == watch->helper);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  } else {
    FAIL("no stop watch: " << why.cStr());
  }
  alarm(0);
}

TEST_CASE("stop watch: a thread another tracer has is refused in the first word") {
  alarm(60);
  auto io = kj::setupAsyncIo();
  DeputyLike deputy(true);
  kj::String why;
  auto first = startStopWatch(*io.lowLevelProvider, deputy.pid, why);
  KJ_IF_MAYBE(a, first) {
    // The second starts once the first traces the thread: started together, either
    // could trace it first.
    CHECK(nextReport(io, *a->reports) == 'A');
    auto second = startStopWatch(*io.lowLevelProvider, deputy.pid, why);
    KJ_IF_MAYBE(b, second) {
      char word[2] = {};
      auto n = io.provider->getTimer().timeoutAfter(10 * kj::SECONDS, b->reports->tryRead(word, 2, 2)).wait(io.waitScope);
      CHECK(n == 2);
      CHECK(word[0] == 'F');
      CHECK(stopWatchRefused(deputy.pid, word[1]) ==
            kj::str("cannot trace the mig-stopwatch thread of deputy PID ", deputy.pid, ": ", strerror(EPERM)));
      int status = 0;
      REQUIRE(waitpid(b->helper, &status, 0) == b->helper);
      CHECK(WEXITSTATUS(status) == 1);
    } else {
      FAIL("no second helper: " << why.cStr());
    }
    deputy.end();
    waitpid(a->helper, nullptr, 0);  // it ends with the process it traces
  } else {
    FAIL("no stop watch: " << why.cStr());
  }
  alarm(0);
}

TEST_CASE("stop watch: a process without the thread is not watched, and says why") {
  auto io = kj::setupAsyncIo();
  DeputyLike other(false);
  kj::String why;
  CHECK_FALSE(stopWatchRunning(other.pid));
  CHECK(startStopWatch(*io.lowLevelProvider, other.pid, why) == nullptr);
  CHECK(why == kj::str("deputy PID ", other.pid, " has no mig-stopwatch thread"));
}

}  // namespace
}  // namespace mig::shadow
