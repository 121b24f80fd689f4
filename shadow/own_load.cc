// See own_load.h.
#include "shadow/own_load.h"

#include <kj/vector.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

struct Proc {
  pid_t pid;
  pid_t ppid;
  unsigned long long start;
  unsigned long long ticks;
};

// /proc/PID/stat: after the command's closing ')', field 3 (state) onwards; ppid is
// field 4, utime 14, stime 15, starttime 22 (proc(5)).
bool readStat(pid_t pid, Proc& out) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = fopen(path, "re");
  if (f == nullptr) return false;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char* p = strrchr(buf, ')');
  if (p == nullptr) return false;
  p += 2;
  unsigned long long field[23] = {};
  for (int i = 3; i <= 22 && *p; ++i) {
    if (i != 3) field[i] = strtoull(p, nullptr, 10);
    p = strchr(p, ' ');
    if (p == nullptr) break;
    ++p;
  }
  out.pid = pid;
  out.ppid = static_cast<pid_t>(field[4]);
  out.ticks = field[14] + field[15];
  out.start = field[22];
  return true;
}

}  // namespace

kj::Maybe<double> OwnLoadMeter::sample(double now) {
  kj::Vector<Proc> procs;
  if (DIR* dir = opendir("/proc")) {
    while (struct dirent* e = readdir(dir)) {
      char* end = nullptr;
      long pid = strtol(e->d_name, &end, 10);
      if (pid <= 0 || *end != '\0') continue;
      Proc p;
      if (readStat(static_cast<pid_t>(pid), p)) procs.add(p);
    }
    closedir(dir);
  }
  // shadowd and its descendants are mig's: marked by walking up each process's parents.
  kj::HashMap<pid_t, size_t> index;
  for (size_t i = 0; i < procs.size(); ++i) index.insert(procs[i].pid, i);
  const pid_t self = getpid();
  auto ours = [&](pid_t pid) {
    for (int depth = 0; depth < 64 && pid > 0; ++depth) {
      if (pid == self) return true;
      KJ_IF_MAYBE(i, index.find(pid)) { pid = procs[*i].ppid; } else { return false; }
    }
    return false;
  };
  unsigned long long used = 0;
  kj::HashMap<pid_t, Seen> next;
  for (auto& p : procs) {
    next.insert(p.pid, Seen{p.start, p.ticks});
    if (ours(p.pid)) continue;
    KJ_IF_MAYBE(before, seen_.find(p.pid)) {
      if (before->start == p.start && p.ticks >= before->ticks) {
        used += p.ticks - before->ticks;
        continue;
      }
    }
    used += p.ticks;  // started since the last sample: all its time is in this interval
  }
  seen_ = kj::mv(next);
  double previous = last_;
  last_ = now;
  if (previous < 0 || now <= previous) return nullptr;
  return static_cast<double>(used) / static_cast<double>(sysconf(_SC_CLK_TCK)) / (now - previous);
}

}  // namespace mig::shadow
