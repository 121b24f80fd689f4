// epoll instances (epoll.cc): the registrations their fdinfo lists, parsed from the
// kernel's text so the unit test can feed it the exact output.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace mig::resources::epoll {

// One "tfd:" line of an epoll instance.
struct Item {
  int32_t fd = -1;     // the fd number it was registered under
  uint32_t events = 0;
  uint64_t data = 0;
  uint64_t ino = 0;    // the watched file's inode
  uint64_t sdev = 0;   // its file system's device, as the kernel encodes dev_t internally
                       // (major << 20 | minor): see kernelDevToUser
};

// nullptr on success, else which line it could not read.
const char* parse(std::string_view fdinfo, std::vector<Item>& out);

// The kernel's internal dev_t (as fdinfo prints it) as stat(2)'s st_dev.
uint64_t kernelDevToUser(uint64_t kdev);

}  // namespace mig::resources::epoll
