// timerfd_create(2) (timerfd.cc): what its fdinfo says, parsed from the kernel's text
// so the unit test can feed it the exact output of several kernels.
#pragma once

#include <cstdint>
#include <string_view>

namespace mig::resources::timerfd {

struct Info {
  int32_t clockid = 0;
  uint64_t ticks = 0;          // expirations not yet read
  uint32_t settimeFlags = 0;   // TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET
  int64_t valueNs = 0;         // time left until the next expiration, 0 = not running
  int64_t intervalNs = 0;
};

// nullptr on success, else which line it could not find or read.
const char* parse(std::string_view fdinfo, Info& out);

}  // namespace mig::resources::timerfd
