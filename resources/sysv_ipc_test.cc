// System V objects as a checkpoint finds them: a semaphore set and a message queue
// this process used are its own, with their values and messages (types, order)
// read without taking them off; objects it never touched are not.
#include "resources/sysv_ipc.h"
#include "resources/sysv_names.h"

#include <doctest/doctest.h>

#include <cstring>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
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

// The migration's rule (sysv_ipc.h outsideUse): an object moves only if every process
// the kernel records as using it is the job's.
TEST_CASE("sysv: an object used only by the job's processes moves; one used by a live outsider does not") {
  const std::set<pid_t> job = {100, 101, 102};
  auto aliveAll = [](pid_t) { return true; };
  auto aliveNone = [](pid_t) { return false; };
  SysvUse ours{{100, 102}, 2, 2};
  CHECK(outsideUse(ours, job, aliveAll) == nullptr);
  SysvUse never{{0, 0}, 0, 0};  // made, no use recorded yet
  CHECK(outsideUse(never, job, aliveAll) == nullptr);

  SysvUse semByOther{{100, 555, 101}, 0, 0};  // one semaphore's sempid is another's
  KJ_IF_MAYBE(u, outsideUse(semByOther, job, aliveAll)) {
    CHECK(u->pid == 555);
  } else {
    FAIL("a live outsider's semop not seen");
  }
  // The outsider ended (or is a zombie): it uses nothing any more.
  CHECK(outsideUse(semByOther, job, aliveNone) == nullptr);
  CHECK(outsideUse(semByOther, job, [](pid_t p) { return p != 555; }) == nullptr);

  // A segment attached 3 times, twice in the job's maps: someone else holds one, even
  // if every recorded PID is the job's (or ended).
  SysvUse attachedOutside{{100, 101}, 3, 2};
  KJ_IF_MAYBE(u, outsideUse(attachedOutside, job, aliveAll)) {
    CHECK(u->pid == 0);
    CHECK(u->attachments == 1);
  } else {
    FAIL("an outside attachment not seen");
  }
  SysvUse queueReadOutside{{100, 777}, 0, 0};  // lspid the job's, lrpid another's
  CHECK(outsideUse(queueReadOutside, job, aliveAll) != nullptr);
}

// A child that does one thing with the kernel's IPC objects, says whether it worked and
// lives on (so the kernel keeps it as an object's user) until release().
struct HeldChild {
  pid_t pid = -1;
  int go[2] = {-1, -1};
  bool worked = false;

  template <typename Action>
  explicit HeldChild(Action action) {
    int done[2];
    REQUIRE(pipe(go) == 0);
    REQUIRE(pipe(done) == 0);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      char c = action() ? 'k' : 'e';
      (void)!write(done[1], &c, 1);
      (void)!read(go[0], &c, 1);
      _exit(0);
    }
    char c = 0;
    REQUIRE(read(done[0], &c, 1) == 1);
    worked = c == 'k';
    close(done[0]);
    close(done[1]);
  }

  void release() {
    (void)!write(go[1], "x", 1);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    close(go[0]);
    close(go[1]);
  }
};

// The same on the kernel's records: a set of two semaphores this process used is its
// alone; once a child outside `pids` did a semop on the other semaphore and lives on,
// the refusal names the set and the child; with the child among `pids` it moves.
TEST_CASE("sysv: a refusal names the object and the outside process that used it") {
  const pid_t self = getpid();
  int sem = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
  REQUIRE(sem >= 0);
  struct sembuf up = {0, 1, 0};
  REQUIRE(semop(sem, &up, 1) == 0);
  CHECK(sysvUsedOutside(kj::arrayPtr(&self, 1)) == nullptr);
  HeldChild held([sem]() {
    struct sembuf other = {1, 1, 0};
    return semop(sem, &other, 1) == 0;
  });
  const pid_t child = held.pid;
  CHECK(held.worked);
  KJ_IF_MAYBE(line, sysvUsedOutside(kj::arrayPtr(&self, 1))) {
    CHECK(kj::StringPtr(*line).startsWith(kj::str("it uses the System V semaphore set (IPC_PRIVATE, id ", sem, ")")));
    CHECK(strstr(line->cStr(), kj::str("which process ", child, " (").cStr()) != nullptr);
  } else {
    FAIL("the child's semop on the job's set not seen");
  }
  const pid_t both[] = {self, child};
  CHECK(sysvUsedOutside(kj::arrayPtr(both, 2)) == nullptr);
  held.release();
  CHECK(sysvUsedOutside(kj::arrayPtr(&self, 1)) == nullptr);  // it ended: uses nothing
  semctl(sem, 0, IPC_RMID);
}

// A segment the process made and attached, attached by another process too: refused,
// naming that process (the last to attach); once it detached and ended, it moves.
TEST_CASE("sysv: a segment another process is attached to is refused") {
  const pid_t self = getpid();
  int shm = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
  REQUIRE(shm >= 0);
  void* at = shmat(shm, nullptr, 0);
  REQUIRE(at != reinterpret_cast<void*>(-1));
  CHECK(sysvUsedOutside(kj::arrayPtr(&self, 1)) == nullptr);
  HeldChild held([shm]() { return shmat(shm, nullptr, SHM_RDONLY) != reinterpret_cast<void*>(-1); });
  const pid_t child = held.pid;
  CHECK(held.worked);
  KJ_IF_MAYBE(line, sysvUsedOutside(kj::arrayPtr(&self, 1))) {
    CHECK(strstr(line->cStr(), kj::str("shared memory segment (IPC_PRIVATE, id ", shm, "), which process ", child).cStr()) != nullptr);
  } else {
    FAIL("the child's attachment not seen");
  }
  held.release();
  CHECK(sysvUsedOutside(kj::arrayPtr(&self, 1)) == nullptr);
  shmdt(at);
  shmctl(shm, IPC_RMID, nullptr);
}

// What a destination checks before it takes a job: a key or id in use here is named.
TEST_CASE("sysv: a key or id taken here is said, a free one is not") {
  const key_t key = static_cast<key_t>(0x4d494700u | (static_cast<unsigned>(getpid()) & 0xffu));
  int sem = semget(key, 1, IPC_CREAT | IPC_EXCL | 0600);
  REQUIRE(sem >= 0);
  KJ_IF_MAYBE(line, sysvNameTaken("sem", key, sem + 1)) {
    CHECK(kj::StringPtr(*line).startsWith("the key of the job's System V semaphore set with key 0x"));
  } else {
    FAIL("a taken key not seen");
  }
  KJ_IF_MAYBE(line, sysvNameTaken("sem", IPC_PRIVATE, sem)) {
    CHECK(kj::StringPtr(*line) == kj::str("the id of the job's System V semaphore set (IPC_PRIVATE, id ", sem, ") is taken on this host"));
  } else {
    FAIL("a taken id not seen");
  }
  REQUIRE(semctl(sem, 0, IPC_RMID) == 0);
  CHECK(sysvNameTaken("sem", key, sem) == nullptr);
}

}  // namespace
}  // namespace mig::resources
