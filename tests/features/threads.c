/* threads: 8 pthreads stepping in lock-step through a mutex and two condition
 * variables, each with thread-local state (initialised .tdata, zeroed .tbss
 * and a TLS buffer); thread 0 holds a recursive mutex (depth 2) from before
 * the first step to after the last, so it is held across any checkpoint, and
 * relocks it once more at every step (which only works if the mutex still
 * names thread 0 as owner under its current TID); thread 1 checks at every
 * step that trylock fails with EBUSY. The threads are joined at the end and
 * their return values checked against an independent recomputation.
 *
 * usage: threads [STEPS]     (default 30)
 */
#include "feature.h"

#include <pthread.h>

enum { NTHREADS = 8, STEP_MS = 100 };

static __thread uint64_t tls_acc = 7;   /* .tdata */
static __thread int tls_id;             /* .tbss */
static __thread char tls_name[32];

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go = PTHREAD_COND_INITIALIZER, done = PTHREAD_COND_INITIALIZER;
static int cur_step, finished, ready, steps;
static uint64_t shared_sum;
static pthread_mutex_t rec;

static uint64_t advance(uint64_t acc, int id, int s)
{
  return acc * 6364136223846793005ULL + (uint64_t)s * (id + 1) + 1442695040888963407ULL;
}

static void *worker(void *arg)
{
  int id = (int)(intptr_t)arg, e;
  tls_id = id;
  tls_acc = 7 + id;
  snprintf(tls_name, sizeof tls_name, "worker-%d", id);
  if (id == 0) {
    CHECK((e = pthread_mutex_lock(&rec)) == 0, "rec lock: %s", strerror(e));
    CHECK((e = pthread_mutex_lock(&rec)) == 0, "rec relock: %s", strerror(e));
  }
  pthread_mutex_lock(&m);
  ready++;
  pthread_cond_broadcast(&done);
  pthread_mutex_unlock(&m);

  for (int s = 1; s <= steps; s++) {
    pthread_mutex_lock(&m);
    while (cur_step < s)
      pthread_cond_wait(&go, &m);
    pthread_mutex_unlock(&m);

    tls_acc = advance(tls_acc, id, s);
    if (id == 0) {
      CHECK((e = pthread_mutex_lock(&rec)) == 0, "step %d: owner relock of recursive mutex: %s", s, strerror(e));
      CHECK((e = pthread_mutex_unlock(&rec)) == 0, "step %d: owner unlock of recursive mutex: %s", s, strerror(e));
    } else if (id == 1) {
      CHECK((e = pthread_mutex_trylock(&rec)) == EBUSY, "step %d: trylock of held recursive mutex: %s", s, strerror(e));
    }
    pthread_mutex_lock(&m);
    shared_sum += mix64(tls_acc);
    finished++;
    pthread_cond_signal(&done);
    pthread_mutex_unlock(&m);
  }

  char want[32];
  snprintf(want, sizeof want, "worker-%d", id);
  CHECK(tls_id == id, "thread %d: tls_id is %d", id, tls_id);
  CHECK(strcmp(tls_name, want) == 0, "thread %d: tls_name is '%s'", id, tls_name);
  if (id == 0) {  /* release only once every thread has done its last trylock */
    pthread_mutex_lock(&m);
    while (cur_step <= steps)
      pthread_cond_wait(&go, &m);
    pthread_mutex_unlock(&m);
    CHECK((e = pthread_mutex_unlock(&rec)) == 0, "rec unlock 1: %s", strerror(e));
    CHECK((e = pthread_mutex_unlock(&rec)) == 0, "rec unlock 2: %s", strerror(e));
  }
  return (void *)(uintptr_t)tls_acc;
}

int main(int argc, char **argv)
{
  steps = argc > 1 ? parse_int(argv[1]) : 30;
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&rec, &ma);

  pthread_t t[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) {
    int e = pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    CHECK(e == 0, "pthread_create: %s", strerror(e));
  }
  pthread_mutex_lock(&m);
  while (ready < NTHREADS)
    pthread_cond_wait(&done, &m);
  pthread_mutex_unlock(&m);

  printf("threads: %d workers, %d steps\n", NTHREADS, steps);
  for (int s = 1; s <= steps; s++) {
    pthread_mutex_lock(&m);
    cur_step = s;
    finished = 0;
    pthread_cond_broadcast(&go);
    while (finished < NTHREADS)
      pthread_cond_wait(&done, &m);
    pthread_mutex_unlock(&m);
    printf("step %d sum %016llx\n", s, (unsigned long long)shared_sum);
    feature_step(s);
    sleep_ms(STEP_MS);
  }

  pthread_mutex_lock(&m);
  cur_step = steps + 1;  /* lets thread 0 release the recursive mutex */
  pthread_cond_broadcast(&go);
  pthread_mutex_unlock(&m);
  for (int i = 0; i < NTHREADS; i++) {
    void *ret;
    int e = pthread_join(t[i], &ret);
    CHECK(e == 0, "pthread_join %d: %s", i, strerror(e));
    uint64_t want = 7 + i;
    for (int s = 1; s <= steps; s++)
      want = advance(want, i, s);
    CHECK((uint64_t)(uintptr_t)ret == want, "thread %d returned %016llx, want %016llx", i,
          (unsigned long long)(uintptr_t)ret, (unsigned long long)want);
    printf("thread %d acc %016llx\n", i, (unsigned long long)want);
  }
  int e = pthread_mutex_trylock(&rec);
  CHECK(e == 0, "recursive mutex still held after thread 0 released it: %s", strerror(e));
  pthread_mutex_unlock(&rec);
  CHECK(tls_acc == 7 && tls_id == 0, "main thread's TLS changed");
  printf("shared sum %016llx\n", (unsigned long long)shared_sum);
  printf("PASS\n");
  return 0;
}
