// signalfd(2) (signalfd.cc): the mask its fdinfo shows, parsed from the kernel's
// text so the unit test can feed it the exact output.
#pragma once

#include <cstdint>
#include <string_view>

namespace mig::resources::signalfd {

// "sigmask:" of a signalfd: bit n-1 is signal n. nullptr on success, else which
// line it could not find or read.
const char* parse(std::string_view fdinfo, uint64_t& sigmask);

}  // namespace mig::resources::signalfd
