// See lost_jobs.h. One job a line, fields tab-separated: id, PID, start, lost at,
// location, command (its tabs and line ends made spaces: it is shown, not run).
#include "shadow/lost_jobs.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

kj::String oneField(kj::StringPtr s) {
  auto out = kj::heapString(s);
  for (char& c : out) {
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

}  // namespace

kj::String lostJobsPath(kj::StringPtr spoolDir) { return kj::str(spoolDir, "/lost-jobs"); }

kj::Vector<LostJob> readLostJobs(kj::StringPtr path) {
  kj::Vector<LostJob> jobs;
  FILE* f = fopen(path.cStr(), "re");
  if (f == nullptr) return jobs;
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, f)) > 0) {
    if (line[n - 1] == '\n') line[n - 1] = '\0';
    char* fields[6];
    size_t count = 0;
    for (char* p = line; count < 6;) {
      fields[count++] = p;
      char* tab = count < 6 ? strchr(p, '\t') : nullptr;
      if (tab == nullptr) break;
      *tab = '\0';
      p = tab + 1;
    }
    if (count != 6) continue;
    char* end = nullptr;
    LostJob j;
    j.id = strtoull(fields[0], &end, 10);
    if (*end != '\0' || j.id == 0) continue;
    j.vpid = static_cast<pid_t>(strtol(fields[1], &end, 10));
    if (*end != '\0') continue;
    j.startedAt = strtod(fields[2], &end);
    if (*end != '\0') continue;
    j.lostAt = strtod(fields[3], &end);
    if (*end != '\0') continue;
    j.location = kj::str(fields[4]);
    j.command = kj::str(fields[5]);
    jobs.add(kj::mv(j));
  }
  free(line);
  fclose(f);
  return jobs;
}

kj::String writeLostJobs(kj::StringPtr path, kj::ArrayPtr<const LostJob> jobs) {
  kj::Vector<const LostJob*> order;
  for (auto& j : jobs) order.add(&j);
  std::sort(order.begin(), order.end(), [](const LostJob* a, const LostJob* b) { return a->lostAt < b->lostAt; });
  const size_t from = order.size() > kLostJobsKept ? order.size() - kLostJobsKept : 0;
  kj::Vector<kj::String> lines;
  for (size_t i = from; i < order.size(); ++i) {
    const LostJob& j = *order[i];
    char times[64];
    snprintf(times, sizeof(times), "%.3f\t%.3f", j.startedAt, j.lostAt);
    lines.add(kj::str(j.id, '\t', j.vpid, '\t', times, '\t', oneField(j.location), '\t', oneField(j.command), '\n'));
  }
  auto text = kj::strArray(lines, "");
  // Whole or not at all: a shadowd killed while writing leaves the old file.
  auto temp = kj::str(path, ".new");
  int fd = open(temp.cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return kj::str("cannot write ", temp, ": ", strerror(errno));
  bool ok = write(fd, text.cStr(), text.size()) == static_cast<ssize_t>(text.size());
  int err = errno;
  ok = close(fd) == 0 && ok;
  if (ok && rename(temp.cStr(), path.cStr()) == 0) return kj::str("");
  err = ok ? errno : err;
  unlink(temp.cStr());
  return kj::str("cannot write ", path, ": ", strerror(err));
}

}  // namespace mig::shadow
