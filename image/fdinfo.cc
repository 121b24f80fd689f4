// See fdinfo.h. The formats are those of fs/eventfd.c, fs/timerfd.c, fs/signalfd.c
// and fs/eventpoll.c (their *_show_fdinfo functions).
#include "image/fdinfo.h"

#include <charconv>
#include <sys/sysmacros.h>

namespace mig::image::fdinfo {
namespace {

constexpr int64_t kNsPerSec = 1000000000;

std::string_view trimLeft(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

// An unsigned number in `base` at the start of `s` (after blanks); consumes it.
template <typename T>
bool number(std::string_view& s, int base, T& out) {
  s = trimLeft(s);
  auto r = std::from_chars(s.data(), s.data() + s.size(), out, base);
  if (r.ec != std::errc() || r.ptr == s.data()) return false;
  s.remove_prefix(static_cast<size_t>(r.ptr - s.data()));
  return true;
}

bool literal(std::string_view& s, std::string_view word) {
  s = trimLeft(s);
  if (s.substr(0, word.size()) != word) return false;
  s.remove_prefix(word.size());
  return true;
}

// A whole field that is one number.
template <typename T>
bool numberField(std::string_view text, std::string_view name, int base, T& out) {
  std::string_view v;
  return field(text, name, v) && number(v, base, out) && trimLeft(v).empty();
}

// "(SECONDS, NANOSECONDS)", as timerfd prints an itimerspec member.
bool timespecField(std::string_view text, std::string_view name, int64_t& ns) {
  std::string_view v;
  uint64_t sec = 0, nsec = 0;
  if (!field(text, name, v) || !literal(v, "(") || !number(v, 10, sec) || !literal(v, ",") ||
      !number(v, 10, nsec) || !literal(v, ")")) {
    return false;
  }
  if (nsec >= static_cast<uint64_t>(kNsPerSec) || sec > static_cast<uint64_t>(INT64_MAX / kNsPerSec - 1)) return false;
  ns = static_cast<int64_t>(sec) * kNsPerSec + static_cast<int64_t>(nsec);
  return true;
}

}  // namespace

bool field(std::string_view text, std::string_view name, std::string_view& value) {
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(at, end - at);
    if (line.size() > name.size() && line.substr(0, name.size()) == name && line[name.size()] == ':') {
      value = trimLeft(line.substr(name.size() + 1));
      return true;
    }
    at = end + 1;
  }
  return false;
}

const char* parseEventfd(std::string_view text, Eventfd& out) {
  // "eventfd-count: %16llx": hexadecimal, padded with blanks.
  if (!numberField(text, "eventfd-count", 16, out.count)) return "no readable eventfd-count line";
  std::string_view v;
  out.semaphore = false;
  if (field(text, "eventfd-semaphore", v)) {
    unsigned s = 0;
    if (!number(v, 10, s) || s > 1) return "an unreadable eventfd-semaphore line";
    out.semaphore = s == 1;
  }
  return nullptr;
}

const char* parseTimerfd(std::string_view text, Timerfd& out) {
  if (!numberField(text, "clockid", 10, out.clockid)) return "no readable clockid line";
  if (!numberField(text, "ticks", 10, out.ticks)) return "no readable ticks line";
  if (!numberField(text, "settime flags", 8, out.settimeFlags)) return "no readable 'settime flags' line";
  if (!timespecField(text, "it_value", out.valueNs)) return "no readable it_value line";
  if (!timespecField(text, "it_interval", out.intervalNs)) return "no readable it_interval line";
  return nullptr;
}

const char* parseSignalfd(std::string_view text, uint64_t& sigmask) {
  if (!numberField(text, "sigmask", 16, sigmask)) return "no readable sigmask line";
  return nullptr;
}

const char* parseEpoll(std::string_view text, std::vector<EpollItem>& out) {
  // "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x", one per registration.
  out.clear();
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(at, end - at);
    at = end + 1;
    if (line.substr(0, 4) != "tfd:") continue;
    line.remove_prefix(4);
    EpollItem item;
    int64_t pos = 0;
    bool ok = number(line, 10, item.fd) && literal(line, "events:") && number(line, 16, item.events) &&
              literal(line, "data:") && number(line, 16, item.data) && literal(line, "pos:");
    ok = ok && number(line, 10, pos);  // signed ("%lli"); from_chars takes the '-'
    ok = ok && literal(line, "ino:") && number(line, 16, item.ino) && literal(line, "sdev:") &&
         number(line, 16, item.sdev);
    if (!ok || item.fd < 0) return "an unreadable tfd line";
    out.push_back(item);
  }
  return nullptr;
}

uint64_t kernelDevToUser(uint64_t kdev) {
  // include/linux/kdev_t.h: MINORBITS 20.
  return makedev(static_cast<unsigned>(kdev >> 20), static_cast<unsigned>(kdev & 0xfffff));
}

}  // namespace mig::image::fdinfo
