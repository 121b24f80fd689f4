// process_tree: /proc/PID/stat parsed whatever the command name holds, and a real
// tree listed root first with a live child and a zombie with its wait status.
#include "resources/process_tree.h"

#include <doctest/doctest.h>

#include <csignal>
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

}  // namespace
}  // namespace mig::resources
