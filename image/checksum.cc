// XXH3-64 wrappers; see checksum.h.
#include "image/checksum.h"

#include <xxhash.h>

#include <new>

namespace mig::image {

uint64_t checksum(const void* data, size_t len) { return XXH3_64bits(data, len); }

Checksummer::Checksummer() : state_(XXH3_createState()) {
  if (state_ == nullptr) throw std::bad_alloc();
  reset();
}

Checksummer::~Checksummer() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

void Checksummer::reset() { XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_)); }

void Checksummer::update(const void* data, size_t len) {
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), data, len);
}

uint64_t Checksummer::digest() const {
  return XXH3_64bits_digest(static_cast<const XXH3_state_t*>(state_));
}

}  // namespace mig::image
