/* tree_sysv: a tree of 3 (root, two children) working through System V IPC
 * objects they share: a semaphore set with a key (a "done" counter, a mutex and a
 * round counter), a private message queue (each child's work by message type; a
 * backlog of messages the root leaves queued, one per round, read back in order at
 * the end), a shared memory segment with a key, attached before the fork, and a
 * private one removed (IPC_RMID) while attached. At any checkpoint the queue holds
 * messages of several types and the semaphores hold values; after a restart the
 * objects must have the same ids (the program holds them), contents and values, and
 * every member must be attached to the same segments (shm_nattch is 3).
 * usage: tree_sysv (30 rounds of 50 ms) */
#include "feature.h"

#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>

#define ROUNDS 30
#define SEG_BYTES (64 * 1024)
#define BACKLOG 9

enum { SEM_DONE, SEM_MUTEX, SEM_ROUNDS };

struct msg {
  long type;
  long round; /* -1: the end */
  char text[40];
};

static int semid, msqid, shmid, shm2id;
static uint64_t *seg;  /* [0]: counter, [1..2]: answers, [8..]: the root's pattern */
static volatile long *seg2;

static uint64_t pattern(long r, size_t i) { return mix64(((uint64_t)r << 32) + i); }

static void semop1(unsigned short num, short op, const char *who)
{
  struct sembuf b = { num, op, 0 };
  while (semop(semid, &b, 1) != 0) CHECK(errno == EINTR, "%s: semop: %s", who, strerror(errno));
}

static void child(int k)
{
  for (;;) {
    struct msg m;
    ssize_t n;
    while ((n = msgrcv(msqid, &m, sizeof m - sizeof(long), k + 1, 0)) < 0) CHECK(errno == EINTR, "child: msgrcv: %s", strerror(errno));
    if (m.round < 0) break;
    char want[40];
    snprintf(want, sizeof want, "work %ld for %d", m.round, k);
    CHECK(strcmp(m.text, want) == 0, "child %d: message '%s', want '%s'", k, m.text, want);
    CHECK(*seg2 == m.round, "child %d, round %ld: the removed segment says %ld", k, m.round, *seg2);
    for (size_t i = 8; i < SEG_BYTES / 8; i++) {
      CHECK(seg[i] == pattern(m.round, i), "child %d, round %ld: word %zu of the segment is not the root's", k, m.round, i);
    }
    semop1(SEM_MUTEX, -1, "child");
    seg[0] += (uint64_t)(m.round * (k + 1));
    semop1(SEM_MUTEX, 1, "child");
    seg[1 + k] = (uint64_t)m.round * 1000 + (uint64_t)k;
    semop1(SEM_DONE, 1, "child");
  }
  CHECK_SYS(shmdt(seg));
  _exit(0);
}

int main(void)
{
  key_t key = (key_t)(0x6d690000 | (getpid() & 0xffff)) & 0x7fffffff;
  semid = semget(key, 3, IPC_CREAT | IPC_EXCL | 0600);
  CHECK_SYS(semid);
  unsigned short init[3] = { 0, 1, 0 };
  CHECK_SYS(semctl(semid, 0, SETALL, init));
  msqid = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
  CHECK_SYS(msqid);
  shmid = shmget(key, SEG_BYTES, IPC_CREAT | IPC_EXCL | 0640);
  CHECK_SYS(shmid);
  seg = shmat(shmid, NULL, 0);
  CHECK(seg != (void *)-1, "shmat: %s", strerror(errno));
  shm2id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
  CHECK_SYS(shm2id);
  seg2 = shmat(shm2id, NULL, 0);
  CHECK(seg2 != (void *)-1, "shmat: %s", strerror(errno));
  CHECK_SYS(shmctl(shm2id, IPC_RMID, NULL)); /* gone once nobody is attached */

  pid_t kids[2];
  for (int k = 0; k < 2; k++) {
    kids[k] = fork();
    CHECK_SYS(kids[k]);
    if (kids[k] == 0) child(k);
  }
  uint64_t want = 0;
  for (long r = 1; r <= ROUNDS; r++) {
    for (size_t i = 8; i < SEG_BYTES / 8; i++) seg[i] = pattern(r, i);
    *seg2 = r;
    struct msg b = { BACKLOG, r, "" };
    snprintf(b.text, sizeof b.text, "backlog %ld", r);
    CHECK_SYS(msgsnd(msqid, &b, sizeof b - sizeof(long), 0));
    for (int k = 0; k < 2; k++) {
      struct msg m = { k + 1, r, "" };
      snprintf(m.text, sizeof m.text, "work %ld for %d", r, k);
      CHECK_SYS(msgsnd(msqid, &m, sizeof m - sizeof(long), 0));
    }
    sleep_ms(50); /* the children work meanwhile, or the messages wait */
    semop1(SEM_DONE, -2, "root");
    want += (uint64_t)r * 3;
    CHECK(seg[0] == want, "round %ld: counter %llu, want %llu", r, (unsigned long long)seg[0], (unsigned long long)want);
    for (int k = 0; k < 2; k++) {
      CHECK(seg[1 + k] == (uint64_t)r * 1000 + (uint64_t)k, "round %ld: child %d's answer is %llu", r, k,
            (unsigned long long)seg[1 + k]);
    }
    semop1(SEM_ROUNDS, 1, "root");
    struct shmid_ds ds;
    CHECK_SYS(shmctl(shmid, IPC_STAT, &ds));
    CHECK(ds.shm_nattch == 3, "round %ld: the segment has %lu attachments, want 3", r, (unsigned long)ds.shm_nattch);
    CHECK(semctl(semid, SEM_MUTEX, GETVAL) == 1, "round %ld: the mutex is %d", r, semctl(semid, SEM_MUTEX, GETVAL));
    feature_step((int)r);
  }
  for (int k = 0; k < 2; k++) {
    struct msg m = { k + 1, -1, "end" };
    CHECK_SYS(msgsnd(msqid, &m, sizeof m - sizeof(long), 0));
  }
  for (int k = 0; k < 2; k++) {
    int status;
    CHECK(waitpid(kids[k], &status, 0) == kids[k], "waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d ended with status %#x", k, status);
  }
  for (long r = 1; r <= ROUNDS; r++) {
    struct msg b;
    CHECK(msgrcv(msqid, &b, sizeof b - sizeof(long), BACKLOG, IPC_NOWAIT) > 0, "backlog %ld: %s", r, strerror(errno));
    CHECK(b.round == r, "backlog message %ld is round %ld: out of order", r, b.round);
  }
  struct msqid_ds q;
  CHECK_SYS(msgctl(msqid, IPC_STAT, &q));
  CHECK(q.msg_qnum == 0, "%lu messages left over", (unsigned long)q.msg_qnum);
  int rounds = semctl(semid, SEM_ROUNDS, GETVAL);
  CHECK_SYS(shmdt(seg));
  CHECK_SYS(shmdt((void *)seg2));
  CHECK_SYS(shmctl(shmid, IPC_RMID, NULL));
  CHECK_SYS(semctl(semid, 0, IPC_RMID));
  CHECK_SYS(msgctl(msqid, IPC_RMID, NULL));
  printf("3 processes, %d rounds through a semaphore set, a message queue and two segments: counter %llu, %d rounds "
         "counted, backlog in order\n", ROUNDS, (unsigned long long)want, rounds);
  puts("PASS");
  return 0;
}
