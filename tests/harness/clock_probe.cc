// clock_probe: prints the clocks a time namespace shifts, for the multi-host
// tests (tests/harness). Each simulated host has its own CLOCK_MONOTONIC and
// CLOCK_BOOTTIME offset; comparing this output across hosts proves it.
//
// Output (seconds, nanosecond precision), one clock per line:
//   monotonic S.NNNNNNNNN
//   boottime S.NNNNNNNNN

#include <time.h>

#include <cstdio>

int main() {
  const struct {
    const char* name;
    clockid_t id;
  } clocks[] = {{"monotonic", CLOCK_MONOTONIC}, {"boottime", CLOCK_BOOTTIME}};
  for (const auto& c : clocks) {
    timespec ts;
    if (clock_gettime(c.id, &ts) != 0) {
      std::perror("clock_probe: clock_gettime");
      return 1;
    }
    std::printf("%s %lld.%09ld\n", c.name, static_cast<long long>(ts.tv_sec), ts.tv_nsec);
  }
  return 0;
}
