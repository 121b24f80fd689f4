// Parsing the text of /proc/PID/fdinfo/N: what the kernel shows for the event-loop
// objects (eventfd, timerfd, signalfd, epoll). Pure functions on text, so the unit
// tests can feed them the kernel's exact output (fdinfo_test.cc). Each parser returns
// nullptr on success, or says which line it could not find or read: the caller turns
// that into an error naming the process and fd.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace mig::image::fdinfo {

// The value of the line "NAME:<blanks>VALUE" (NAME may contain spaces, as in
// "settime flags"), without its leading blanks; false when there is no such line.
bool field(std::string_view text, std::string_view name, std::string_view& value);

struct Eventfd {
  uint64_t count = 0;
  bool semaphore = false;  // "eventfd-semaphore: 1"; older kernels lack the line (false)
};
const char* parseEventfd(std::string_view text, Eventfd& out);

struct Timerfd {
  int32_t clockid = 0;
  uint64_t ticks = 0;          // expirations not yet read
  uint32_t settimeFlags = 0;   // TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET
  int64_t valueNs = 0;         // time left until the next expiration, 0 = not running
  int64_t intervalNs = 0;
};
const char* parseTimerfd(std::string_view text, Timerfd& out);

// "sigmask:" of a signalfd: bit n-1 is signal n.
const char* parseSignalfd(std::string_view text, uint64_t& sigmask);

// One "tfd:" line of an epoll instance.
struct EpollItem {
  int32_t fd = -1;     // the fd number it was registered under
  uint32_t events = 0;
  uint64_t data = 0;
  uint64_t ino = 0;    // the watched file's inode
  uint64_t sdev = 0;   // its file system's device, as the kernel encodes dev_t internally
                       // (major << 20 | minor): see kernelDevToUser
};
const char* parseEpoll(std::string_view text, std::vector<EpollItem>& out);

// The kernel's internal dev_t (as fdinfo prints it) as stat(2)'s st_dev.
uint64_t kernelDevToUser(uint64_t kdev);

}  // namespace mig::image::fdinfo
