/* tree_shm: a tree of 3 (root, two children) working through memory they share, in
 * the three ways programs share it after fork: MAP_SHARED|MAP_ANONYMOUS memory (a
 * process-shared pthread mutex and a counter in it), named POSIX semaphores
 * (sem_open, then sem_unlink at once, as python's multiprocessing does: the
 * semaphores live in deleted /dev/shm files) and a POSIX shared memory object
 * (shm_open, mmap, shm_unlink). Each round the root writes a pattern into the shm
 * object and wakes each child through its own semaphore; each child checks the
 * pattern, adds to the counter under the mutex, writes its answer into the object
 * and posts "done". After a restart the three must still be one object each for the
 * three processes, or a wake-up, the counter or an answer goes missing.
 * usage: tree_shm (30 rounds of 50 ms) */
#include "feature.h"

#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define ROUNDS 30
#define DATA_BYTES (64 * 1024)

struct shared {
  pthread_mutex_t lock;
  long counter;
  long round; /* -1: the end */
};

static struct shared *sh;
static uint64_t *data;
static sem_t *go[2], *done;

static uint64_t pattern(long r, size_t i) { return mix64(((uint64_t)r << 32) + i); }

static sem_t *named_sem(const char *what, int k)
{
  char name[64];
  snprintf(name, sizeof name, "/mig-tree-shm-%d-%s%d", (int)getpid(), what, k);
  sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, 0);
  CHECK(s != SEM_FAILED, "sem_open %s: %s", name, strerror(errno));
  CHECK_SYS(sem_unlink(name));
  return s;
}

static void wait_sem(sem_t *s, const char *who)
{
  while (sem_wait(s) != 0) CHECK(errno == EINTR, "%s: sem_wait: %s", who, strerror(errno));
}

static void child(int k)
{
  for (;;) {
    wait_sem(go[k], "child");
    long r = sh->round;
    if (r < 0) _exit(0);
    for (size_t i = 2; i < DATA_BYTES / 8; i++) {
      CHECK(data[i] == pattern(r, i), "child %d, round %ld: word %zu of the shm object is not the root's", k, r, i);
    }
    CHECK(pthread_mutex_lock(&sh->lock) == 0, "child: lock");
    sh->counter += r * (k + 1);
    CHECK(pthread_mutex_unlock(&sh->lock) == 0, "child: unlock");
    data[k] = (uint64_t)r * 1000 + (uint64_t)k;
    CHECK_SYS(sem_post(done));
  }
}

int main(void)
{
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(sh != MAP_FAILED, "mmap: %s", strerror(errno));
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
  CHECK(pthread_mutex_init(&sh->lock, &ma) == 0, "pthread_mutex_init");
  char name[64];
  snprintf(name, sizeof name, "/mig-tree-shm-%d-data", (int)getpid());
  int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
  CHECK_SYS(fd);
  CHECK_SYS(ftruncate(fd, DATA_BYTES));
  data = mmap(NULL, DATA_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  CHECK(data != MAP_FAILED, "mmap shm: %s", strerror(errno));
  CHECK_SYS(shm_unlink(name));
  close(fd);
  go[0] = named_sem("go", 0);
  go[1] = named_sem("go", 1);
  done = named_sem("done", 0);

  pid_t kids[2];
  for (int k = 0; k < 2; k++) {
    kids[k] = fork();
    CHECK_SYS(kids[k]);
    if (kids[k] == 0) child(k);
  }
  long want = 0;
  for (long r = 1; r <= ROUNDS; r++) {
    for (size_t i = 2; i < DATA_BYTES / 8; i++) data[i] = pattern(r, i);
    sh->round = r;
    for (int k = 0; k < 2; k++) CHECK_SYS(sem_post(go[k]));
    sleep_ms(50); /* the children work, or wait for the lock, meanwhile */
    wait_sem(done, "root");
    wait_sem(done, "root");
    want += r * 3;
    CHECK(pthread_mutex_lock(&sh->lock) == 0, "root: lock");
    CHECK(sh->counter == want, "round %ld: counter %ld, want %ld", r, sh->counter, want);
    CHECK(pthread_mutex_unlock(&sh->lock) == 0, "root: unlock");
    for (int k = 0; k < 2; k++) {
      CHECK(data[k] == (uint64_t)r * 1000 + (uint64_t)k, "round %ld: child %d's answer is %llu", r, k,
            (unsigned long long)data[k]);
    }
    feature_step((int)r);
  }
  sh->round = -1;
  for (int k = 0; k < 2; k++) CHECK_SYS(sem_post(go[k]));
  for (int k = 0; k < 2; k++) {
    int status;
    CHECK(waitpid(kids[k], &status, 0) == kids[k], "waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d ended with status %#x", k, status);
  }
  printf("3 processes, %d rounds through shared anonymous memory, named semaphores and a shm object: counter %ld\n",
         ROUNDS, sh->counter);
  puts("PASS");
  return 0;
}
