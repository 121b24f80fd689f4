// The program of clock_test.sh. `clock_app config FILE REALTIME_NS MONOTONIC_NS`
// writes a forwarding Config with those clock offsets (and no home fds) for the
// shim's test hook. `clock_app report` prints, one "NAME VALUE" per line, what its
// clocks say through each way in the shim covers (libc functions, raw system calls)
// and how long waits with absolute deadlines computed on those clocks lasted, in
// milliseconds of its CLOCK_MONOTONIC (a difference: the offset cancels out). A
// deadline 500 ms ahead of the job's clock must wait about 500 ms, not the offset
// longer, and not return at once. A forked child reads the job's clocks too.
#include "shim/forward/forward_config.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <initializer_list>
#include <pthread.h>
#include <semaphore.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

constexpr long kWaitNs = 500 * 1000 * 1000;

int writeConfig(const char* path, long long realtimeNs, long long monotonicNs) {
  mig::forward::Config c;
  memset(&c, 0, sizeof(c));
  c.magic = mig::forward::kConfigMagic;
  c.size = sizeof(c);
  strcpy(c.relaySocket, "/nonexistent/relay.sock");  // nothing here goes home
  c.jobId = 1;
  c.realtimeOffsetNs = realtimeNs;
  c.monotonicOffsetNs = monotonicNs;
  FILE* f = fopen(path, "we");
  if (f == nullptr || fwrite(&c, sizeof(c), 1, f) != 1 || fclose(f) != 0) {
    perror(path);
    return 1;
  }
  return 0;
}

long long elapsedSinceMs(const struct timespec& start) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return ((now.tv_sec - start.tv_sec) * 1000000000ll + (now.tv_nsec - start.tv_nsec)) / 1000000;
}

struct timespec startTimer() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t;
}

struct timespec ahead(clockid_t clock, long ns) {
  struct timespec t;
  clock_gettime(clock, &t);
  t.tv_nsec += ns;
  while (t.tv_nsec >= 1000000000) {
    t.tv_nsec -= 1000000000;
    ++t.tv_sec;
  }
  return t;
}

void printSeconds(const char* name, long long s) { printf("%s %lld\n", name, s); }

pthread_mutex_t g_piMutex;

void* holdPiMutex(void* done) {
  pthread_mutex_lock(&g_piMutex);
  sem_wait(static_cast<sem_t*>(done));
  pthread_mutex_unlock(&g_piMutex);
  return nullptr;
}

int report() {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  struct timespec ts;
  struct timeval tv;
  clock_gettime(CLOCK_REALTIME, &ts);
  printSeconds("realtime", ts.tv_sec);
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  printSeconds("realtime_coarse", ts.tv_sec);
  clock_gettime(CLOCK_TAI, &ts);
  printSeconds("tai", ts.tv_sec);
  printSeconds("time", time(nullptr));
  gettimeofday(&tv, nullptr);
  printSeconds("gettimeofday", tv.tv_sec);
  timespec_get(&ts, TIME_UTC);
  printSeconds("timespec_get", ts.tv_sec);
  syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
  printSeconds("raw_clock_gettime", ts.tv_sec);
  syscall(SYS_gettimeofday, &tv, nullptr);
  printSeconds("raw_gettimeofday", tv.tv_sec);
  time_t t = 0;
  long r = syscall(SYS_time, &t);
  printSeconds("raw_time", r == t ? r : -1);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  printSeconds("monotonic", ts.tv_sec);
  clock_gettime(CLOCK_BOOTTIME, &ts);
  printSeconds("boottime", ts.tv_sec);
  syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
  printSeconds("raw_monotonic", ts.tv_sec);
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  printSeconds("cputime", ts.tv_sec);

  // pthread_cond_timedwait: FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, absolute.
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
  pthread_mutex_lock(&m);
  struct timespec deadline = ahead(CLOCK_REALTIME, kWaitNs), start = startTimer();
  int e = pthread_cond_timedwait(&cv, &m, &deadline);
  printf("cond_timedwait_ms %lld %s\n", elapsedSinceMs(start), e == ETIMEDOUT ? "ETIMEDOUT" : strerror(e));
  // pthread_cond_clockwait on CLOCK_MONOTONIC: FUTEX_WAIT_BITSET, absolute monotonic.
  deadline = ahead(CLOCK_MONOTONIC, kWaitNs), start = startTimer();
  e = pthread_cond_clockwait(&cv, &m, CLOCK_MONOTONIC, &deadline);
  printf("cond_clockwait_ms %lld %s\n", elapsedSinceMs(start), e == ETIMEDOUT ? "ETIMEDOUT" : strerror(e));
  pthread_mutex_unlock(&m);

  sem_t sem;
  sem_init(&sem, 0, 0);
  deadline = ahead(CLOCK_REALTIME, kWaitNs), start = startTimer();
  e = sem_timedwait(&sem, &deadline) == 0 ? 0 : errno;
  printf("sem_timedwait_ms %lld %s\n", elapsedSinceMs(start), e == ETIMEDOUT ? "ETIMEDOUT" : strerror(e));

  // pthread_mutex_timedlock of a priority-inheritance mutex: FUTEX_LOCK_PI, always
  // an absolute CLOCK_REALTIME time.
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
  pthread_mutex_init(&g_piMutex, &attr);
  sem_t done;
  sem_init(&done, 0, 0);
  pthread_t holder;
  pthread_create(&holder, nullptr, holdPiMutex, &done);
  while (pthread_mutex_trylock(&g_piMutex) == 0) {  // until the holder has it
    pthread_mutex_unlock(&g_piMutex);
    usleep(1000);
  }
  deadline = ahead(CLOCK_REALTIME, kWaitNs), start = startTimer();
  e = pthread_mutex_timedlock(&g_piMutex, &deadline);
  printf("pi_timedlock_ms %lld %s\n", elapsedSinceMs(start), e == ETIMEDOUT ? "ETIMEDOUT" : strerror(e));
  sem_post(&done);
  pthread_join(holder, nullptr);

  for (clockid_t clock : {CLOCK_REALTIME, CLOCK_MONOTONIC}) {
    const char* name = clock == CLOCK_REALTIME ? "realtime" : "monotonic";
    deadline = ahead(clock, kWaitNs), start = startTimer();
    e = clock_nanosleep(clock, TIMER_ABSTIME, &deadline, nullptr);
    printf("nanosleep_abs_%s_ms %lld %s\n", name, elapsedSinceMs(start), e == 0 ? "0" : strerror(e));

    int fd = timerfd_create(clock, TFD_CLOEXEC);
    struct itimerspec its = {{0, 0}, ahead(clock, kWaitNs)};
    start = startTimer();
    uint64_t ticks = 0;
    bool ok = fd >= 0 && timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, nullptr) == 0 &&
              read(fd, &ticks, sizeof(ticks)) == static_cast<ssize_t>(sizeof(ticks));
    printf("timerfd_abs_%s_ms %lld %s\n", name, elapsedSinceMs(start), ok ? "0" : strerror(errno));
    close(fd);

    sigset_t alrm;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alrm, nullptr);
    struct sigevent ev {};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGALRM;
    timer_t timer;
    its = {{0, 0}, ahead(clock, kWaitNs)};
    start = startTimer();
    struct timespec cap = {30, 0};
    ok = timer_create(clock, &ev, &timer) == 0 && timer_settime(timer, TIMER_ABSTIME, &its, nullptr) == 0 &&
         sigtimedwait(&alrm, nullptr, &cap) == SIGALRM;
    printf("timer_abs_%s_ms %lld %s\n", name, elapsedSinceMs(start), ok ? "0" : strerror(errno));
    timer_delete(timer);
  }
  // A child process forwards like its parent: on the job's clocks, deadlines converted.
  pid_t child = fork();
  if (child == 0) {
    clock_gettime(CLOCK_REALTIME, &ts);
    printSeconds("child_realtime", ts.tv_sec);
    pthread_mutex_lock(&m);
    deadline = ahead(CLOCK_REALTIME, kWaitNs), start = startTimer();
    e = pthread_cond_timedwait(&cv, &m, &deadline);
    printf("child_cond_timedwait_ms %lld %s\n", elapsedSinceMs(start), e == ETIMEDOUT ? "ETIMEDOUT" : strerror(e));
    fflush(stdout);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  printf("DONE\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && strcmp(argv[1], "config") == 0) return writeConfig(argv[2], atoll(argv[3]), atoll(argv[4]));
  if (argc == 2 && strcmp(argv[1], "report") == 0) return report();
  fprintf(stderr, "usage: clock_app config FILE REALTIME_NS MONOTONIC_NS | clock_app report\n");
  return 2;
}
