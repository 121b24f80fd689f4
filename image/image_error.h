// How the image code reports bad input: a kj::Exception whose description is one
// line a user can act on, naming the section and byte offset at fault.
#pragma once

#include <kj/exception.h>
#include <kj/string.h>

#include <cstdint>

namespace mig::image {

// Throws a kj::Exception whose description is exactly `message`.
[[noreturn]] void fail(kj::String message);

// "section 3 (pages) at byte 8192", the prefix of every per-section error.
kj::String describeSection(uint32_t index, uint16_t type, uint64_t frameOffset);

}  // namespace mig::image
