/* sysv_job: one process that works through System V IPC objects it made, all by
 * id: a semaphore set, a message queue and a shared memory segment. Each step it
 * takes and gives the semaphore, sends itself a message it then receives, and adds
 * the step to a counter in the segment, checking the sum: a move that lost or
 * copied an object's state would show. Its objects move with it (shared_objects.sh).
 * usage: sysv_job [STEPS] (default 20 steps of 100 ms) */
#include "feature.h"

#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>

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
  int shmid = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
  CHECK_SYS(shmid);
  long *sum = shmat(shmid, NULL, 0);
  CHECK(sum != (void *)-1, "shmat: %s", strerror(errno));
  long want = 0;
  for (int s = 1; s <= steps; s++) {
    struct sembuf down = { 0, -1, 0 }, up = { 0, 1, 0 };
    CHECK_SYS(semop(semid, &down, 1));
    struct msg m = { 1, s };
    CHECK_SYS(msgsnd(msqid, &m, sizeof m.step, 0));
    CHECK(msgrcv(msqid, &m, sizeof m.step, 1, 0) == (ssize_t)sizeof m.step && m.step == s, "step %d: message lost", s);
    *sum += s;
    want += s;
    CHECK(*sum == want, "step %d: the segment holds %ld, want %ld", s, *sum, want);
    CHECK_SYS(semop(semid, &up, 1));
    feature_step(s);
    sleep_ms(100);
  }
  CHECK_SYS(shmdt(sum));
  CHECK_SYS(shmctl(shmid, IPC_RMID, NULL));
  CHECK_SYS(semctl(semid, 0, IPC_RMID));
  CHECK_SYS(msgctl(msqid, IPC_RMID, NULL));
  printf("%d steps through a semaphore set, a message queue and a segment (sum %ld)\n", steps, want);
  puts("PASS");
  return 0;
}
