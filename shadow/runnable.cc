// See runnable.h. One pass over /proc/PID/task/TID/stat per sample: about as costly as
// the own-load meter of *owner returns* (one small read per thread).
#include "shadow/runnable.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
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

// What a sample needs of one /proc/.../stat: the state (the field after the ')' of the
// name), the thread count (field 20) and the start (field 22, clock ticks since boot).
struct Stat {
  char state = '?';
  long threads = 0;
  double startSeconds = 0;
};

bool readStat(const char* path, Stat& out) {
  FILE* f = fopen(path, "re");
  if (f == nullptr) return false;  // it ended meanwhile
  char buf[1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char* close = strrchr(buf, ')');
  if (close == nullptr || close[1] != ' ') return false;
  out.state = close[2];
  const char* p = close + 2;  // field 3
  for (int field = 3; field < 22; ++field) {
    p = strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
    if (field + 1 == 20) out.threads = strtol(p, nullptr, 10);
  }
  out.startSeconds = strtod(p, nullptr) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return true;
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
      char path[64];
      snprintf(path, sizeof path, "/proc/%d/stat", pid);
      Stat st;
      if (!readStat(path, st)) continue;
      if (st.threads <= 1) {  // most processes: their one thread is the process
        if (st.state == 'R' && uptime - st.startSeconds >= minAge_) s.running.add(pid);
        continue;
      }
      char dir[64];
      snprintf(dir, sizeof dir, "/proc/%d/task", pid);
      DIR* tasks = opendir(dir);
      if (tasks == nullptr) continue;
      while (struct dirent* t = readdir(tasks)) {
        if (!allDigits(t->d_name)) continue;
        char task[sizeof dir + 2 * sizeof t->d_name];
        snprintf(task, sizeof task, "%s/%s/stat", dir, t->d_name);
        Stat ts;
        if (readStat(task, ts) && ts.state == 'R' && uptime - ts.startSeconds >= minAge_) s.running.add(pid);
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

double RunnableMeter::clock() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec / 1e9;
}

double RunnableMeter::averageForReader(double now) {
  lastRead_ = now;
  if (samples_.size() == 0 || now - samples_.back().at > 2 * minAge_) sample(now);
  return average();
}

bool RunnableMeter::wanted(double now) const { return now - lastRead_ <= kInterestSeconds; }

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
