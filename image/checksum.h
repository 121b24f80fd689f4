// Section checksums: XXH3-64 from libxxhash (Debian's xxhash), chosen because it
// runs at memory speed, so checksumming never limits checkpoint throughput.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mig::image {

uint64_t checksum(const void* data, size_t len);

// Incremental form for data that arrives in pieces (page data streamed to a socket).
class Checksummer {
 public:
  Checksummer();
  ~Checksummer();
  Checksummer(const Checksummer&) = delete;
  Checksummer& operator=(const Checksummer&) = delete;

  void reset();
  void update(const void* data, size_t len);
  uint64_t digest() const;

 private:
  void* state_;  // XXH3_state_t*, kept opaque so xxhash.h stays out of our headers
};

}  // namespace mig::image
