// See proc_file.h.
#include "resources/proc_file.h"

#include "image/image_error.h"

#include <kj/io.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace mig::resources {

using image::fail;

bool readProcFileIfExists(pid_t pid, const std::string& what, std::string& out) {
  const std::string path = "/proc/" + std::to_string(pid) + "/" + what;
  out.clear();
  kj::AutoCloseFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd == nullptr && errno == ENOENT) return false;
  if (fd == nullptr) fail(kj::str("cannot open ", path.c_str(), ": ", strerror(errno)));
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  return true;
}

std::string readProcFile(pid_t pid, const std::string& what) {
  std::string s;
  if (!readProcFileIfExists(pid, what, s)) {
    fail(kj::str("cannot open /proc/", pid, "/", what.c_str(), ": ", strerror(ENOENT)));
  }
  return s;
}

std::string readLink(const std::string& path) {
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf) - 1);
  if (n < 0) fail(kj::str("cannot read link ", path.c_str(), ": ", strerror(errno)));
  return std::string(buf, static_cast<size_t>(n));
}

bool field(std::string_view text, std::string_view name, std::string_view& value) {
  return !forEachLine(text, [&](std::string_view line) {
    if (line.size() > name.size() && line.substr(0, name.size()) == name && line[name.size()] == ':') {
      value = fdinfo::trimLeft(line.substr(name.size() + 1));
      return false;
    }
    return true;
  });
}

std::string fieldOr(std::string_view text, std::string_view name) {
  std::string_view v;
  return field(text, name, v) ? std::string(v) : std::string();
}

bool processRuns(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* end = strrchr(buf, ')');  // the command name may hold anything
  return end != nullptr && end[1] == ' ' && end[2] != 'Z' && end[2] != 'X';
}

namespace fdinfo {

std::string_view trimLeft(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

bool literal(std::string_view& s, std::string_view word) {
  s = trimLeft(s);
  if (s.substr(0, word.size()) != word) return false;
  s.remove_prefix(word.size());
  return true;
}

std::string read(pid_t pid, int fd) { return readProcFile(pid, "fdinfo/" + std::to_string(fd)); }

void unreadable(pid_t pid, int fd, const char* kind, const char* why) {
  fail(kj::str("cannot checkpoint ", kind, " fd ", fd, ": /proc/", pid, "/fdinfo/", fd, " has ", why,
               " (a kernel whose format mig does not know?)"));
}

}  // namespace fdinfo
}  // namespace mig::resources
