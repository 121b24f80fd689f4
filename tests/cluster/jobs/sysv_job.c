/* sysv_job: one process that works through System V IPC objects it made (a
 * semaphore set and a message queue, both by id): each step it takes and gives the
 * semaphore and sends itself a message it then receives. A move of it is refused
 * before the freeze (the objects stay with the host's kernel), and it finishes where
 * it was. usage: sysv_job [STEPS] (default 20 steps of 100 ms) */
#include "feature.h"

#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>

struct msg {
  long type;
  long step;
};

int main(int argc, char **argv)
{
  int steps = argc > 1 ? atoi(argv[1]) : 20;
  int semid = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
  CHECK_SYS(semid);
  unsigned short one[1] = { 1 };
  CHECK_SYS(semctl(semid, 0, SETALL, one));
  int msqid = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
  CHECK_SYS(msqid);
  for (int s = 1; s <= steps; s++) {
    struct sembuf down = { 0, -1, 0 }, up = { 0, 1, 0 };
    CHECK_SYS(semop(semid, &down, 1));
    struct msg m = { 1, s };
    CHECK_SYS(msgsnd(msqid, &m, sizeof m.step, 0));
    CHECK(msgrcv(msqid, &m, sizeof m.step, 1, 0) == (ssize_t)sizeof m.step && m.step == s, "step %d: message lost", s);
    CHECK_SYS(semop(semid, &up, 1));
    feature_step(s);
    sleep_ms(100);
  }
  CHECK_SYS(semctl(semid, 0, IPC_RMID));
  CHECK_SYS(msgctl(msqid, IPC_RMID, NULL));
  printf("%d steps through a semaphore set and a message queue\n", steps);
  puts("PASS");
  return 0;
}
