// See runnable.h. One pass over /proc/PID/task/TID/stat per sample: about as costly as
// the own-load meter of *owner returns* (one small read per thread).
#include "shadow/runnable.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

bool allDigits(const char* s) {
  if (*s == '\0') return false;
  for (; *s; ++s) {
    if (*s < '0' || *s > '9') return false;
  }
  return true;
}

double uptimeSeconds() {
  double up = 0;
  if (FILE* f = fopen("/proc/uptime", "re")) {
    if (fscanf(f, "%lf", &up) != 1) up = 0;
    fclose(f);
  }
  return up;
}

// Whether the thread of /proc/PID/task/TID/stat is runnable (state R, the field after
// the ')' of the name) and started at least `minAge` seconds before `uptime`
// (starttime, field 22, in clock ticks since boot).
bool runnableFor(const char* path, double uptime, double minAge) {
  FILE* f = fopen(path, "re");
  if (f == nullptr) return false;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char* close = strrchr(buf, ')');
  if (close == nullptr || close[1] != ' ' || close[2] != 'R') return false;
  const char* p = close + 2;  // field 3, the state
  for (int field = 3; field < 22; ++field) {
    p = strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  double start = strtod(p, nullptr) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return uptime - start >= minAge;
}

}  // namespace

void RunnableMeter::sample(double now) {
  Sample s;
  s.at = now;
  pid_t self = getpid();
  double uptime = uptimeSeconds();
  if (DIR* proc = opendir("/proc")) {
    while (struct dirent* e = readdir(proc)) {
      if (!allDigits(e->d_name)) continue;
      pid_t pid = static_cast<pid_t>(atoi(e->d_name));
      if (pid == self) continue;  // counting is what it is doing
      char dir[64];
      snprintf(dir, sizeof dir, "/proc/%d/task", pid);
      DIR* tasks = opendir(dir);
      if (tasks == nullptr) continue;  // it ended meanwhile
      while (struct dirent* t = readdir(tasks)) {
        if (!allDigits(t->d_name)) continue;
        char path[sizeof dir + 2 * sizeof t->d_name];
        snprintf(path, sizeof path, "%s/%s/stat", dir, t->d_name);
        if (runnableFor(path, uptime, minAge_)) s.running.add(pid);
      }
      closedir(tasks);
    }
    closedir(proc);
  }
  kj::Vector<Sample> kept;
  for (auto& old : samples_) {
    if (old.at > now - window_) kept.add(kj::mv(old));
  }
  kept.add(kj::mv(s));
  samples_ = kj::mv(kept);
}

double RunnableMeter::average() const { return averageWithout(0); }

double RunnableMeter::averageWithout(pid_t pid) const {
  if (samples_.size() == 0) return 0;
  double sum = 0;
  for (auto& s : samples_) {
    for (pid_t p : s.running) sum += p != pid ? 1 : 0;
  }
  return sum / static_cast<double>(samples_.size());
}

double RunnableMeter::fractionRunning(pid_t pid) const {
  if (samples_.size() == 0) return 0;
  double in = 0;
  for (auto& s : samples_) {
    bool found = false;
    for (pid_t p : s.running) found = found || p == pid;
    in += found ? 1 : 0;
  }
  return in / static_cast<double>(samples_.size());
}

double RunnableMeter::coveredSeconds() const {
  if (samples_.size() < 2) return 0;
  return samples_.back().at - samples_.front().at;
}

}  // namespace mig::shadow
