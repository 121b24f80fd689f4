/* mutex_kinds: mutexes whose state names a thread, held across the whole run
 * (so across any checkpoint), and waits that span it.
 * - An error-checking mutex held by thread E: E's relock must fail with
 *   EDEADLK at every step (the mutex knows E as owner), others get EBUSY from
 *   trylock and EPERM from unlock, and at the end E's unlock succeeds.
 * - A robust mutex held by thread R, which exits at the end without unlocking:
 *   the next locker must get EOWNERDEAD (the kernel walks R's robust list on
 *   exit), make it consistent and use it.
 * - A normal mutex held by main until step STEPS-5, with thread W blocked in
 *   pthread_mutex_lock on it (a futex wait) until then.
 * - Thread C in pthread_cond_timedwait (CLOCK_MONOTONIC, 60 s) until main
 *   signals it at step STEPS-3: it must return 0, not ETIMEDOUT.
 *
 * usage: mutex_kinds [STEPS]   (default 30 steps of 100 ms, at least 8)
 */
#include "feature.h"

#include <pthread.h>
#include <stdatomic.h>

enum { STEP_MS = 100, LOCK_LIMIT_S = 10 };

static pthread_mutex_t errchk, robust, plain = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t sm = PTHREAD_MUTEX_INITIALIZER, cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t scv = PTHREAD_COND_INITIALIZER, ccv;
static int cur_step, checked, steps, cond_flag;
static atomic_int w_acquired, plain_released;

/* E and R check their mutex at every step, then report to main. */
static void step_loop(void (*check)(int))
{
  for (int s = 1; s <= steps + 1; s++) {   /* step steps+1 means "finish" */
    pthread_mutex_lock(&sm);
    while (cur_step < s)
      pthread_cond_wait(&scv, &sm);
    pthread_mutex_unlock(&sm);
    if (s <= steps)
      check(s);
    pthread_mutex_lock(&sm);
    checked++;
    pthread_cond_broadcast(&scv);
    pthread_mutex_unlock(&sm);
  }
}

static void e_check(int s)
{
  int e = pthread_mutex_lock(&errchk);
  CHECK(e == EDEADLK, "step %d: owner's relock of the error-checking mutex: %s", s, strerror(e));
}

static void *thread_e(void *arg)
{
  (void)arg;
  int e = pthread_mutex_lock(&errchk);
  CHECK(e == 0, "lock errchk: %s", strerror(e));
  step_loop(e_check);
  e = pthread_mutex_unlock(&errchk);
  CHECK(e == 0, "owner's unlock of the error-checking mutex: %s", strerror(e));
  return NULL;
}

static void r_check(int s) { (void)s; }

static void *thread_r(void *arg)
{
  (void)arg;
  int e = pthread_mutex_lock(&robust);
  CHECK(e == 0, "lock robust: %s", strerror(e));
  step_loop(r_check);
  return NULL;  /* exits holding it */
}

static void *thread_w(void *arg)
{
  (void)arg;
  int e = pthread_mutex_lock(&plain);
  CHECK(e == 0, "W: lock: %s", strerror(e));
  CHECK(atomic_load(&plain_released), "W got the mutex before main released it");
  atomic_store(&w_acquired, 1);
  pthread_mutex_unlock(&plain);
  return NULL;
}

static void *thread_c(void *arg)
{
  int *result = arg;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += 60;
  pthread_mutex_lock(&cm);
  int e = 0;
  while (!cond_flag && e == 0)
    e = pthread_cond_timedwait(&ccv, &cm, &ts);
  *result = e;
  pthread_mutex_unlock(&cm);
  return NULL;
}

static int timed_lock(pthread_mutex_t *mx)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += LOCK_LIMIT_S;
  return pthread_mutex_timedlock(mx, &ts);
}

int main(int argc, char **argv)
{
  steps = argc > 1 ? parse_int(argv[1]) : 30;
  CHECK(steps >= 8, "need at least 8 steps");
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutex_init(&errchk, &ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_NORMAL);
  pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&robust, &ma);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ccv, &ca);

  pthread_mutex_lock(&plain);
  pthread_t te, tr, tw, tc;
  int c_result = -1;
  CHECK(pthread_create(&te, NULL, thread_e, NULL) == 0, "pthread_create");
  CHECK(pthread_create(&tr, NULL, thread_r, NULL) == 0, "pthread_create");
  CHECK(pthread_create(&tw, NULL, thread_w, NULL) == 0, "pthread_create");
  CHECK(pthread_create(&tc, NULL, thread_c, &c_result) == 0, "pthread_create");

  printf("mutex_kinds: %d steps\n", steps);
  for (int s = 1; s <= steps + 1; s++) {
    pthread_mutex_lock(&sm);
    cur_step = s;
    checked = 0;
    pthread_cond_broadcast(&scv);
    while (checked < 2)
      pthread_cond_wait(&scv, &sm);
    pthread_mutex_unlock(&sm);
    if (s > steps)
      break;
    int e;
    CHECK((e = pthread_mutex_trylock(&errchk)) == EBUSY, "step %d: trylock errchk: %s", s, strerror(e));
    CHECK((e = pthread_mutex_unlock(&errchk)) == EPERM, "step %d: non-owner unlock errchk: %s", s, strerror(e));
    CHECK((e = pthread_mutex_trylock(&robust)) == EBUSY, "step %d: trylock robust: %s", s, strerror(e));
    CHECK(!atomic_load(&w_acquired) || s > steps - 5, "step %d: W holds a mutex main never released", s);
    if (s == steps - 5) {
      atomic_store(&plain_released, 1);
      pthread_mutex_unlock(&plain);
    }
    if (s == steps - 3) {
      pthread_mutex_lock(&cm);
      cond_flag = 1;
      pthread_cond_signal(&ccv);
      pthread_mutex_unlock(&cm);
    }
    feature_step(s);
    sleep_ms(STEP_MS);
  }

  CHECK(pthread_join(te, NULL) == 0 && pthread_join(tr, NULL) == 0, "join E, R");
  CHECK(pthread_join(tw, NULL) == 0 && pthread_join(tc, NULL) == 0, "join W, C");
  CHECK(atomic_load(&w_acquired), "W never got the mutex");
  CHECK(c_result == 0, "pthread_cond_timedwait returned %s", strerror(c_result));
  int e = timed_lock(&errchk);
  CHECK(e == 0, "errchk after E released it: %s", strerror(e));
  pthread_mutex_unlock(&errchk);
  e = timed_lock(&robust);
  CHECK(e == EOWNERDEAD, "robust mutex after its owner died: %s, want EOWNERDEAD", strerror(e));
  CHECK((e = pthread_mutex_consistent(&robust)) == 0, "pthread_mutex_consistent: %s", strerror(e));
  CHECK((e = pthread_mutex_unlock(&robust)) == 0, "unlock robust: %s", strerror(e));
  CHECK((e = timed_lock(&robust)) == 0, "robust mutex after recovery: %s", strerror(e));
  pthread_mutex_unlock(&robust);

  printf("error-checking mutex: EDEADLK %d times, then released by its owner\n", steps);
  printf("robust mutex: EOWNERDEAD after its owner exited\n");
  printf("blocked locker got the mutex after its release\n");
  printf("timed condition wait signalled\n");
  printf("PASS\n");
  return 0;
}
