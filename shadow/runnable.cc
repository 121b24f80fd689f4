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

// The state letter of /proc/PID/task/TID/stat: the field after the ')' of the name.
char threadState(const char* path) {
  FILE* f = fopen(path, "re");
  if (f == nullptr) return '?';
  char buf[512];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char* close = strrchr(buf, ')');
  return close != nullptr && close[1] == ' ' ? close[2] : '?';
}

}  // namespace

void RunnableMeter::sample(double now) {
  Sample s;
  s.at = now;
  pid_t self = getpid();
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
        char path[128];
        snprintf(path, sizeof path, "%s/%s/stat", dir, t->d_name);
        if (threadState(path) == 'R') s.running.add(pid);
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
