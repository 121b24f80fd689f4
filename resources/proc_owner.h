// Whose a process is, as the kernel says: the real uid in /proc/PID/status. Header-
// only, for migctl (control_client.cc) and shadowd (local_service.cc) alike: jobs
// belong to this uid, never to the one a process names itself by (its control
// socket's name comes from a getuid() it may fake).
#pragma once

#include <cstdio>
#include <sys/types.h>

namespace mig::resources {

// The real uid of process `pid`, or (uid_t)-1 when /proc cannot tell.
inline uid_t realUidOf(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/status", static_cast<int>(pid));
  FILE* f = fopen(path, "re");
  if (f == nullptr) return static_cast<uid_t>(-1);
  unsigned uid = static_cast<unsigned>(-1);
  char line[256];
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (sscanf(line, "Uid: %u", &uid) == 1) break;
  }
  fclose(f);
  return static_cast<uid_t>(uid);
}

}  // namespace mig::resources
