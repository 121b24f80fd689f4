// Reading the /proc files of the process being captured: whole files (stat, status,
// auxv, fdinfo/N, ...), links (fd/N, cwd), and the "Name:<blanks>value" lines that
// status and fdinfo are made of. Every capture in resources/ reads /proc through these.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>
#include <sys/types.h>

namespace mig::resources {

// The contents of /proc/PID/WHAT; throws (one line naming the file) if it cannot
// be opened.
std::string readProcFile(pid_t pid, const std::string& what);

// The same, false (and `out` empty) when the file does not exist: for files the kernel
// has only with some options (timers: CONFIG_CHECKPOINT_RESTORE).
bool readProcFileIfExists(pid_t pid, const std::string& what, std::string& out);

// Calls `line` with each line of `text`, without its newline. A `line` that returns
// bool stops the walk by returning false; forEachLine then returns false too.
template <typename F>
bool forEachLine(std::string_view text, F&& line) {
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view one = text.substr(at, end - at);
    at = end + 1;
    if constexpr (std::is_void_v<decltype(line(one))>) {
      line(one);
    } else if (!line(one)) {
      return false;
    }
  }
  return true;
}

// Calls `line` with each line of /proc/PID/WHAT, without its newline (maps, ...);
// throws as readProcFile does.
template <typename F>
void forEachProcLine(pid_t pid, const std::string& what, F&& line) {
  const std::string text = readProcFile(pid, what);
  forEachLine(text, [&](std::string_view one) { line(std::string(one)); });
}

// Whether process `pid` exists and has not ended: its /proc/PID/stat state is not Z or
// X (a zombie has ended). No allocation, no exception. A process whose non-first
// thread execs reads as a zombie for a moment: a watch that must not mistake that for
// an end looks twice (shadow/process_end.h).
bool processRuns(pid_t pid);

// Where the link at `path` points; throws (one line naming it) if it cannot be read.
std::string readLink(const std::string& path);

// The value of the line "NAME:<blanks>VALUE" (NAME may contain spaces, as in
// "settime flags"), without its leading blanks; false when there is no such line.
bool field(std::string_view text, std::string_view name, std::string_view& value);

// The same as a string, "" when there is no such line (for strtoul and friends).
std::string fieldOr(std::string_view text, std::string_view name);

}  // namespace mig::resources

// Pieces of the kernel's fdinfo lines, for the kinds' parsers: each consumes what it
// read from the front of `s` (after blanks) and says whether it was there.
namespace mig::resources::fdinfo {

std::string_view trimLeft(std::string_view s);
bool literal(std::string_view& s, std::string_view word);

template <typename T>
bool number(std::string_view& s, int base, T& out);

// A whole field that is one number.
template <typename T>
bool numberField(std::string_view text, std::string_view name, int base, T& out) {
  std::string_view v;
  return field(text, name, v) && number(v, base, out) && trimLeft(v).empty();
}

// /proc/PID/fdinfo/FD of the process being captured.
std::string read(pid_t pid, int fd);

// The error for an fdinfo a parser could not read (`why` is the parser's answer).
[[noreturn]] void unreadable(pid_t pid, int fd, const char* kind, const char* why);

}  // namespace mig::resources::fdinfo

#include <charconv>

template <typename T>
bool mig::resources::fdinfo::number(std::string_view& s, int base, T& out) {
  s = trimLeft(s);
  auto r = std::from_chars(s.data(), s.data() + s.size(), out, base);
  if (r.ec != std::errc() || r.ptr == s.data()) return false;
  s.remove_prefix(static_cast<size_t>(r.ptr - s.data()));
  return true;
}
