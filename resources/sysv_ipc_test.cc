// System V objects as a checkpoint finds them: a semaphore set and a message queue
// this process used are its own, with their values and messages (types, order)
// read without taking them off; objects it never touched are not.
#include "resources/sysv_ipc.h"

#include <doctest/doctest.h>

#include <cstring>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <unistd.h>

namespace mig::resources {
namespace {

struct Msg {
  long type;
  char text[8];
};

TEST_CASE("sysv: a process's semaphore set and queue are found with their values and messages, in order") {
  const pid_t self = getpid();
  int sem = semget(IPC_PRIVATE, 3, IPC_CREAT | 0600);
  REQUIRE(sem >= 0);
  int q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
  REQUIRE(q >= 0);
  int untouched = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);  // made, never used: not seen
  REQUIRE(untouched >= 0);
  unsigned short values[3] = {4, 0, 32767};
  REQUIRE(semctl(sem, 0, SETALL, values) == 0);
  Msg a{7, "first"}, b{2, "second"};
  REQUIRE(msgsnd(q, &a, sizeof(a.text), 0) == 0);
  REQUIRE(msgsnd(q, &b, sizeof(b.text), 0) == 0);

  SysvIpc found = findSysvIpc(kj::arrayPtr(&self, 1));
  const SysvIpc::Sem* s = nullptr;
  for (auto& x : found.sem) {
    if (x.perm.id == sem) s = &x;
    CHECK(x.perm.id != untouched);
  }
  REQUIRE(s != nullptr);
  CHECK(s->values == std::vector<uint16_t>{4, 0, 32767});
  CHECK(s->perm.mode == 0600);
  const SysvIpc::Msg* m = nullptr;
  for (auto& x : found.msg) {
    if (x.perm.id == q) m = &x;
  }
  REQUIRE(m != nullptr);
  REQUIRE(m->messages.size() == 2);
  CHECK(m->messages[0].first == 7);
  CHECK(strcmp(m->messages[0].second.c_str(), "first") == 0);
  CHECK(m->messages[1].first == 2);
  // Still queued: MSG_COPY took nothing off.
  struct msqid_ds ds {};
  REQUIRE(msgctl(q, IPC_STAT, &ds) == 0);
  CHECK(ds.msg_qnum == 2);
  KJ_IF_MAYBE(line, firstSysvObject(kj::arrayPtr(&self, 1))) {
    CHECK(kj::StringPtr(*line).startsWith("System V "));
  } else {
    FAIL("no object named for a refusal");
  }
  CHECK(removeSysvIpc(found) >= 2);
  semctl(untouched, 0, IPC_RMID);
  CHECK(semctl(sem, 0, GETVAL) < 0);
}

}  // namespace
}  // namespace mig::resources
