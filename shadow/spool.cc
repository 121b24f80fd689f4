// See spool.h.
#include "shadow/spool.h"

#include <kj/map.h>

#include <cctype>
#include <climits>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

bool allDigits(kj::StringPtr s) {
  if (s.size() == 0 || s.size() > 20) return false;
  for (char c : s) {
    if (!isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// The names of files in `dir` that a process maps (/proc/PID/maps) or has open
// (/proc/PID/fd); a deleted file shows as "PATH (deleted)" and is not ours any more.
kj::HashSet<kj::String> namesInUse(kj::StringPtr dir) {
  kj::HashSet<kj::String> used;
  auto prefix = kj::str(dir, "/");
  auto note = [&](kj::StringPtr path) {
    if (!path.startsWith(prefix)) return;
    auto name = path.slice(prefix.size());
    if (strchr(name.cStr(), '/') == nullptr) used.upsert(kj::str(name), [](kj::String&, kj::String&&) {});
  };
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return used;
  while (struct dirent* e = readdir(proc)) {
    if (!allDigits(e->d_name)) continue;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "/proc/%s/maps", e->d_name);
    if (FILE* f = fopen(path, "re")) {
      char line[PATH_MAX + 128];
      while (fgets(line, sizeof(line), f)) {
        char* slash = strchr(line, '/');
        if (slash == nullptr) continue;
        slash[strcspn(slash, "\n")] = '\0';
        note(slash);
      }
      fclose(f);
    }
    snprintf(path, sizeof(path), "/proc/%s/fd", e->d_name);
    if (DIR* fds = opendir(path)) {
      while (struct dirent* fd = readdir(fds)) {
        char target[PATH_MAX];
        ssize_t n = readlink(kj::str(path, "/", fd->d_name).cStr(), target, sizeof(target) - 1);
        if (n <= 0) continue;
        target[n] = '\0';
        note(target);
      }
      closedir(fds);
    }
  }
  closedir(proc);
  return used;
}

}  // namespace

kj::String spoolImagePath(kj::StringPtr dir, uint64_t jobId) { return kj::str(dir, "/job-", jobId, ".img"); }
kj::String spoolLogPath(kj::StringPtr dir, uint64_t jobId) { return kj::str(dir, "/job-", jobId, ".log"); }

bool isSpoolFileName(kj::StringPtr name) {
  if (!name.startsWith("job-")) return false;
  for (kj::StringPtr ext : {".img", ".log", ".pages"}) {
    if (name.endsWith(ext) && name.size() > 4 + ext.size()) return allDigits(kj::str(name.slice(4, name.size() - ext.size())));
  }
  return false;
}

kj::Vector<kj::String> cleanSpool(kj::StringPtr dir) {
  kj::Vector<kj::String> deleted;
  DIR* d = opendir(dir.cStr());
  if (d == nullptr) return deleted;
  kj::Vector<kj::String> candidates;
  while (struct dirent* e = readdir(d)) {
    if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN) continue;
    if (isSpoolFileName(e->d_name)) candidates.add(kj::str(e->d_name));
  }
  closedir(d);
  if (candidates.size() == 0) return deleted;
  auto used = namesInUse(dir);
  for (auto& name : candidates) {
    if (used.contains(name)) continue;
    if (unlink(kj::str(dir, "/", name).cStr()) == 0) deleted.add(kj::mv(name));
  }
  return deleted;
}

}  // namespace mig::shadow
