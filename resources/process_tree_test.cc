// process_tree: /proc/PID/stat parsed whatever the command name holds, and a real
// tree listed root first with a live child and a zombie with its wait status; a
// migration's descendants without mig's own helper; the quick listing of a tree that
// holds still (from its children lists) the same as the full one.
#include "resources/process_tree.h"

#include <doctest/doctest.h>

#include <csignal>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::resources {
namespace {

TEST_CASE("a stat line is read past a command name with spaces and parentheses") {
  // Fields 3..52 of a zombie whose exit_code (field 52) is 0x700: exit status 7.
  std::string rest = "Z 10 11 12";
  for (int field = 7; field <= 51; ++field) rest += " 0";
  rest += " 1792\n";
  TreeProcess p{};
  REQUIRE(parseStat("42 (a (b) c) " + rest, p));
  CHECK(p.pid == 42);
  CHECK(p.command == "a (b) c");
  CHECK(p.zombie);
  CHECK(p.ppid == 10);
  CHECK(p.pgid == 11);
  CHECK(p.sid == 12);
  CHECK(p.waitStatus == 0x700);
  CHECK(!parseStat("garbage", p));
}

TEST_CASE("a tree lists its root first, then children, with a zombie's status") {
  int go[2];
  REQUIRE(pipe(go) == 0);
  pid_t live = fork();
  REQUIRE(live >= 0);
  if (live == 0) {
    char c;
    close(go[1]);
    (void)!read(go[0], &c, 1);
    _exit(0);
  }
  close(go[0]);
  pid_t dead = fork();
  REQUIRE(dead >= 0);
  if (dead == 0) _exit(7);
  siginfo_t si{};
  REQUIRE(waitid(P_PID, static_cast<id_t>(dead), &si, WEXITED | WNOWAIT) == 0);  // a zombie now

  auto tree = listTree(getpid());
  REQUIRE(tree.size() >= 3);
  CHECK(tree[0].pid == getpid());
  bool sawLive = false, sawDead = false;
  for (auto& p : tree) {
    if (p.pid == live) sawLive = !p.zombie && p.ppid == getpid();
    if (p.pid == dead) sawDead = p.zombie && WIFEXITED(p.waitStatus) && WEXITSTATUS(p.waitStatus) == 7;
  }
  CHECK(sawLive);
  CHECK(sawDead);

  close(go[1]);
  int st;
  CHECK(waitpid(live, &st, 0) == live);
  CHECK(waitpid(dead, &st, 0) == dead);
}

// A child (named `name` if given) with a child of its own: it says so on `started`,
// and both end once `go` is closed.
pid_t forkWithChild(const int go[2], const int started[2], const char* name) {
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (name != nullptr) prctl(PR_SET_NAME, name);
    close(go[1]);
    pid_t grandchild = fork();
    if (grandchild == 0) {
      char c;
      (void)!read(go[0], &c, 1);
      _exit(0);
    }
    (void)!write(started[1], "s", 1);
    char c;
    (void)!read(go[0], &c, 1);
    waitpid(grandchild, nullptr, 0);
    _exit(0);
  }
  return child;
}

TEST_CASE("a migration's descendants leave out mig's own helper and what it started") {
  // A child named migctl (what a program that moves itself runs) with a child of its
  // own, and an ordinary child: only the ordinary one is the job's.
  int go[2], started[2];
  REQUIRE(pipe(go) == 0);
  REQUIRE(pipe(started) == 0);
  pid_t helper = forkWithChild(go, started, "migctl");
  pid_t worker = fork();
  REQUIRE(worker >= 0);
  if (worker == 0) {
    char c;
    close(go[1]);
    (void)!read(go[0], &c, 1);
    _exit(0);
  }
  close(go[0]);
  char c;
  REQUIRE(read(started[0], &c, 1) == 1);  // the helper is named and has its child

  auto mine = jobDescendants(getpid(), nullptr);
  bool sawWorker = false, sawHelperOrItsChild = false;
  for (auto& p : mine) {
    if (p.pid == worker) sawWorker = true;
    if (p.pid == helper || p.ppid == helper) sawHelperOrItsChild = true;
  }
  CHECK(sawWorker);
  CHECK(!sawHelperOrItsChild);

  close(go[1]);
  close(started[0]);
  close(started[1]);
  int st;
  CHECK(waitpid(helper, &st, 0) == helper);
  CHECK(waitpid(worker, &st, 0) == worker);
}

TEST_CASE("a tree that holds still is listed from its children lists as from all of /proc") {
  // A child with a child of its own, and a zombie: the same processes either way, and
  // only the grandchild surely childless.
  int go[2], started[2];
  REQUIRE(pipe(go) == 0);
  REQUIRE(pipe(started) == 0);
  pid_t child = forkWithChild(go, started, nullptr);
  close(go[0]);
  pid_t dead = fork();
  REQUIRE(dead >= 0);
  if (dead == 0) _exit(3);
  siginfo_t si{};
  REQUIRE(waitid(P_PID, static_cast<id_t>(dead), &si, WEXITED | WNOWAIT) == 0);
  char c;
  REQUIRE(read(started[0], &c, 1) == 1);

  auto all = listTree(getpid());
  kj::Vector<TreeProcess> quick;
  KJ_IF_MAYBE(t, listFrozenTree(getpid())) quick = kj::mv(*t);
  else FAIL("no children lists on this kernel");
  REQUIRE(quick.size() == all.size());
  CHECK(quick[0].pid == getpid());
  pid_t grandchild = 0;
  for (auto& p : all) {
    bool found = false;
    for (auto& q : quick) found |= q.pid == p.pid && q.ppid == p.ppid && q.zombie == p.zombie;
    CHECK(found);
    if (p.ppid == child) grandchild = p.pid;
  }
  REQUIRE(grandchild > 0);
  CHECK(surelyChildless(grandchild));
  CHECK(!surelyChildless(child));
  CHECK(!surelyChildless(getpid()));

  close(go[1]);
  close(started[0]);
  close(started[1]);
  int st;
  CHECK(waitpid(child, &st, 0) == child);
  CHECK(waitpid(dead, &st, 0) == dead);
}

}  // namespace
}  // namespace mig::resources
