// The freeze's breakdown lines (hop_times.h).
#include "shadow/hop_times.h"

#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

namespace mig::shadow {

kj::String formatHopTimes(kj::StringPtr who, kj::ArrayPtr<const HopMark> marks) {
  if (marks.size() == 0) return kj::str(who, ": no marks");
  kj::Vector<char> out;
  char buf[96];
  auto add = [&](const char* text, size_t n) { out.addAll(text, text + n); };
  add(who.begin(), who.size());
  int n = snprintf(buf, sizeof(buf), " at %llu us:", static_cast<unsigned long long>(marks[0].us));
  add(buf, static_cast<size_t>(n));
  for (size_t i = 1; i < marks.size(); ++i) {
    // A clock set back between two marks is shown as 0, never as a huge unsigned gap.
    uint64_t d = marks[i].us >= marks[i - 1].us ? marks[i].us - marks[i - 1].us : 0;
    n = snprintf(buf, sizeof(buf), " %s %.3f ms,", marks[i].phase, static_cast<double>(d) / 1000.0);
    add(buf, static_cast<size_t>(n));
  }
  uint64_t total = marks.back().us >= marks[0].us ? marks.back().us - marks[0].us : 0;
  n = snprintf(buf, sizeof(buf), " total %.3f ms", static_cast<double>(total) / 1000.0);
  add(buf, static_cast<size_t>(n));
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

HopTimes::HopTimes(kj::StringPtr who) : path_(getenv("MIG_HOP_TIMES")), who_(kj::str(who)) {
  if (path_ != nullptr && *path_ == '\0') path_ = nullptr;
}

void HopTimes::mark(const char* phase) {
  if (path_ == nullptr) return;
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  marks_.add(HopMark{phase, static_cast<uint64_t>(t.tv_sec) * 1000000 + static_cast<uint64_t>(t.tv_nsec) / 1000});
}

void HopTimes::write() const {
  if (path_ == nullptr) return;
  auto line = kj::str(formatHopTimes(who_, marks_.asPtr()), "\n");
  int fd = open(path_, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  (void)!::write(fd, line.begin(), line.size());
  close(fd);
}

}  // namespace mig::shadow
