/* feature.h: what the feature programs share (header only, plain C).
 *
 * A feature program sets up one kind of resource, then works in numbered
 * steps, printing "STEP n" (flushed) after each, so that run_feature.sh can
 * checkpoint it at a chosen step. At the end it verifies its own state, prints
 * a deterministic summary and "PASS", and exits 0 (or a documented status).
 * Anything that goes wrong is one "FAIL: ..." line on stderr and exit 1.
 * stdout never carries PIDs, addresses or times: it is compared byte for byte
 * between an undisturbed run and a checkpointed-and-restarted one.
 */
#ifndef MIG_TESTS_FEATURES_FEATURE_H
#define MIG_TESTS_FEATURES_FEATURE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__attribute__((format(printf, 1, 2), noreturn, unused))
static void feature_fail(const char *fmt, ...)
{
  va_list ap;
  fflush(stdout);
  fputs("FAIL: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  _exit(1);
}

/* CHECK(cond, fmt, ...): fail with the message unless cond holds. */
#define CHECK(cond, ...) \
  do { if (!(cond)) feature_fail(__VA_ARGS__); } while (0)
/* CHECK_SYS(call): the call must not return -1; errno in the message. */
#define CHECK_SYS(call) \
  do { if ((call) == -1) feature_fail("%s:%d: %s: %s", __FILE__, __LINE__, #call, strerror(errno)); } while (0)

/* Installs fn as sig's SA_SIGINFO handler with `flags` (SA_ONSTACK, SA_RESTART, ...)
 * and an empty sa_mask. */
__attribute__((unused))
static void feature_handle(int sig, void (*fn)(int, siginfo_t *, void *), int flags)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = fn;
  sa.sa_flags = SA_SIGINFO | flags;
  sigemptyset(&sa.sa_mask);
  CHECK_SYS(sigaction(sig, &sa, NULL));
}

/* Reads exactly n bytes from fd (a pipe or stream socket may return them in
 * pieces); end of file or an error fails with `who` in the message. */
__attribute__((unused))
static void read_full(int fd, void *buf, size_t n, const char *who)
{
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    CHECK(r > 0 || (r < 0 && errno == EINTR), "%s: read (got %zu of %zu): %s", who, got, n,
          r == 0 ? "end of file" : strerror(errno));
    if (r > 0) got += (size_t)r;
  }
}

/* MIG_FEATURE_HOLD=K:PATH[,K:PATH...] (run_feature.sh's restart-chain sets it for
 * the runs it checkpoints, loopback_precopy.sh for the job it moves): after printing
 * STEP K the program waits until PATH exists, so that a checkpoint or a move at STEP
 * K near the end finds it still running however slow the machine is (the test makes
 * PATH once it is done with it). The wait is a 10 ms sleep like a step's (a signal of
 * the program's own ends one early), at most 600 s. */
static inline void feature_hold(int n)
{
  const char *hold = getenv("MIG_FEATURE_HOLD");
  while (hold != NULL && *hold != '\0') {
    char *path;
    long k = strtol(hold, &path, 10);
    if (*path != ':')
      feature_fail("MIG_FEATURE_HOLD: '%s' is not K:PATH[,K:PATH...]", hold);
    path++;
    size_t len = strcspn(path, ",");
    hold = path[len] == ',' ? path + len + 1 : NULL;
    if (k != n)
      continue;
    char file[4096];
    CHECK(len < sizeof file, "MIG_FEATURE_HOLD: a path of %zu bytes", len);
    memcpy(file, path, len);
    file[len] = '\0';
    for (int i = 0; access(file, F_OK) != 0; i++) {
      CHECK(i < 60000, "MIG_FEATURE_HOLD: %s did not appear within 600 s", file);
      struct timespec ts = { 0, 10 * 1000000L };
      nanosleep(&ts, NULL);
    }
  }
}

/* The step marker run_feature.sh waits for. */
static inline void feature_step(int n)
{
  printf("STEP %d\n", n);
  fflush(stdout);
  feature_hold(n);
}

/* Sleeps ms milliseconds. The program installs no signal handler that could
 * interrupt it, so an EINTR here is a bug of whoever interrupted us (e.g. a
 * checkpoint that leaked its signal into the application): fail. */
static inline void sleep_ms(long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  if (nanosleep(&ts, NULL) != 0)
    feature_fail("nanosleep(%ld ms): %s", ms, strerror(errno));
}

/* Sleeps ms milliseconds in a program that has signal handlers of its own:
 * EINTR is expected there and the remaining time is slept. */
static inline void sleep_ms_restarting(long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  while (nanosleep(&ts, &ts) != 0)
    CHECK(errno == EINTR, "nanosleep: %s", strerror(errno));
}

static inline int64_t mono_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* splitmix64's finaliser: a cheap, good 64-bit mixing function. */
static inline uint64_t mix64(uint64_t x)
{
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* A deterministic PRNG (xorshift64*). */
static inline uint64_t rng_next(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545f4914f6cdd1dULL;
}

/* FNV-1a over bytes, for printing checksums of buffers and files. */
static inline uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}
#define FNV_INIT 0xcbf29ce484222325ULL

/* Parses "123", "64K", "256M", "1G" into bytes; fails on anything else. */
static inline uint64_t parse_size(const char *s)
{
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  switch (*end) {
  case 'G': case 'g': v <<= 30; end++; break;
  case 'M': case 'm': v <<= 20; end++; break;
  case 'K': case 'k': v <<= 10; end++; break;
  default: break;
  }
  CHECK(*end == '\0' && end != s, "bad size '%s'", s);
  return v;
}

/* Parses a positive int argument or fails. */
static inline int parse_int(const char *s)
{
  char *end;
  long v = strtol(s, &end, 10);
  CHECK(*end == '\0' && end != s && v > 0 && v < 1000000000, "bad number '%s'", s);
  return (int)v;
}

/* Writes all of buf to fd or fails. */
static inline void write_all(int fd, const void *buf, size_t n)
{
  const char *p = (const char *)buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    CHECK(w > 0, "write(fd %d): %s", fd, w < 0 ? strerror(errno) : "short");
    p += w;
    n -= (size_t)w;
  }
}

/* Reads exactly n bytes from fd or fails (EOF included). */
static inline void read_exact(int fd, void *buf, size_t n)
{
  char *p = (char *)buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    CHECK(r > 0, "read(fd %d): %s", fd, r < 0 ? strerror(errno) : "unexpected EOF");
    p += r;
    n -= (size_t)r;
  }
}

/* Prints the permissions column of /proc/self/maps for every mapping that
 * overlaps [start, start+len), with offsets relative to start, e.g.
 * "  +0x0000 rw-p". Deterministic as long as the layout is preserved. */
static inline void print_map_perms(const char *label, const void *start, size_t len)
{
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  uintptr_t lo = (uintptr_t)start, hi = lo + len;
  CHECK(f != NULL, "open /proc/self/maps: %s", strerror(errno));
  while (fgets(line, sizeof line, f)) {
    unsigned long a, b;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) != 3)
      continue;
    if (b <= lo || a >= hi)
      continue;
    printf("%s +0x%lx..+0x%lx %s\n", label, (unsigned long)(a < lo ? 0 : a - lo),
           (unsigned long)((b > hi ? hi : b) - lo), perms);
  }
  fclose(f);
}

#endif
