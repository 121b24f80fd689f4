// eventfd(2) (eventfd.cc): what its fdinfo says, parsed from the kernel's text so
// the unit test can feed it the exact output of several kernels.
#pragma once

#include <cstdint>
#include <string_view>

namespace mig::resources::eventfd {

struct Info {
  uint64_t count = 0;
  bool semaphore = false;  // "eventfd-semaphore: 1"; older kernels lack the line (false)
};

// nullptr on success, else which line it could not find or read.
const char* parse(std::string_view fdinfo, Info& out);

}  // namespace mig::resources::eventfd
