// A small but complete synthetic image (header, memory map, pages with a known
// pattern, threads, end) for tests and for seeding the fuzzer's corpus.
#pragma once

#include "image/writer.h"

#include <kj/array.h>

#include <cstdint>

namespace mig::image {

// Byte `i` of the page at `addr` in sample images.
inline uint8_t samplePageByte(uint64_t addr, uint64_t i) {
  return static_cast<uint8_t>((addr >> 12) * 31 + i * 7 + 1);
}

struct SampleOptions {
  uint32_t pageRuns = 3;       // each of 1, 2, 3... pages, in separate regions
  uint32_t threads = 2;
  bool fileRegion = true;      // also a file-backed region (/usr/bin/true) without saved pages
};

kj::Array<kj::byte> makeSampleImage(const SampleOptions& options = {});

// Writes a section of `type` (pages, pageSums) whose metadata is one page run, `pages`
// pages at `addr`, and whose data is the `len` bytes at `bytes` (a test may make the two
// disagree).
void writeOneRun(ImageWriter& w, SectionType type, uint64_t addr, uint32_t pages, const void* bytes, size_t len);

}  // namespace mig::image
