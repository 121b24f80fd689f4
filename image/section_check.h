// What each known section type requires of its metadata beyond being a valid Cap'n
// Proto message: field ranges, ordering, consistency with the data length. A
// reader runs these checks as it meets each section, so later code can trust what
// it reads. Unknown section types (from a newer writer) pass unchecked.
#pragma once

#include "image/section_codec.h"

namespace mig::image {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kUserAddressLimit = 1ull << 47;  // x86_64, 4-level paging
inline constexpr uint32_t kMaxThreads = 1u << 16;
inline constexpr uint32_t kMaxSigframeBytes = 64u << 10;

void checkSectionMeta(const SectionInfo& info, capnp::MessageReader& message);

}  // namespace mig::image
