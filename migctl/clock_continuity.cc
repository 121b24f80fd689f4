// See clock_continuity.h. Offsets of a time namespace are relative to the machine's
// own clocks (not to the namespace we are in), so ours are read from
// /proc/self/timens_offsets and added in.
#include "migctl/clock_continuity.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

namespace mig::migctl {
namespace {

constexpr int64_t kNsPerSec = 1000000000;

int64_t nowNs(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

// Our own namespace's offsets (0 in the machine's namespace).
void currentOffsets(int64_t& monotonic, int64_t& boottime) {
  monotonic = boottime = 0;
  FILE* f = fopen("/proc/self/timens_offsets", "re");
  if (f == nullptr) return;
  char name[32];
  long long sec, nsec;
  while (fscanf(f, "%31s %lld %lld", name, &sec, &nsec) == 3) {
    int64_t v = sec * kNsPerSec + nsec;
    if (strcmp(name, "monotonic") == 0) monotonic = v;
    if (strcmp(name, "boottime") == 0) boottime = v;
  }
  fclose(f);
}

}  // namespace

kj::Maybe<kj::String> keepJobClocks(int64_t jobMonotonicNs) {
  if (jobMonotonicNs <= 0) return kj::str("the image has no clock reading");
  int64_t monoOffset, bootOffset;
  currentOffsets(monoOffset, bootOffset);
  int64_t delta = jobMonotonicNs - nowNs(CLOCK_MONOTONIC);
  monoOffset += delta;
  bootOffset += delta;
  if (unshare(CLONE_NEWTIME) != 0) return kj::str("no time namespace (", strerror(errno), ")");
  char text[128];
  auto line = [&](const char* clock, int64_t v) {
    // The kernel wants seconds and a non-negative nanosecond part.
    int64_t sec = v / kNsPerSec, nsec = v % kNsPerSec;
    if (nsec < 0) {
      nsec += kNsPerSec;
      --sec;
    }
    return snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s %lld %lld\n", clock,
                    static_cast<long long>(sec), static_cast<long long>(nsec));
  };
  text[0] = '\0';
  line("monotonic", monoOffset);
  line("boottime", bootOffset);
  int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return kj::str("cannot set the time namespace's offsets (", strerror(errno), ")");
  ssize_t n = write(fd, text, strlen(text));
  int err = errno;
  close(fd);
  if (n < 0) return kj::str("cannot set the time namespace's offsets (", strerror(err), ")");
  return nullptr;
}

}  // namespace mig::migctl
