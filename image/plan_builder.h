// Derives a restore plan (restore_plan.h) from an indexed image file: the part of
// restarting that needs a real C++ environment (Cap'n Proto, allocation, error
// messages) runs here, so the restorer only executes the result.
#pragma once

#include "image/file_reader.h"
#include "image/restore_plan.h"

#include <kj/array.h>
#include <kj/string.h>

namespace mig::image {

class RestorePlan {
 public:
  explicit RestorePlan(kj::Array<uint64_t> storage) : storage_(kj::mv(storage)) {}
  const plan::Header& header() const { return *reinterpret_cast<const plan::Header*>(storage_.begin()); }
  kj::ArrayPtr<const kj::byte> bytes() const {
    return kj::arrayPtr(reinterpret_cast<const kj::byte*>(storage_.begin()), header().totalSize);
  }
  // The fd (open in the restorer when it starts) that carries the shim's forwarding
  // Config (shim/forward/forward_config.h) into the restored process; -1 = none.
  void setConfigFd(int fd) { reinterpret_cast<plan::Header*>(storage_.begin())->configFd = fd; }
  // For changes after building (resources/lazy_pages.h marks pages lazy).
  plan::Header& mutableHeader() { return *reinterpret_cast<plan::Header*>(storage_.begin()); }

 private:
  kj::Array<uint64_t> storage_;  // uint64_t keeps the plan 8-byte aligned
};

// A shared memory region mapped from a file made before the restorer runs (a tree's
// shared object: resources/shared_memory.h) instead of as the image says; its pages
// are in the file, not put in by the restorer.
struct RegionFile {
  uint64_t start;   // the region's start in the image's memory map
  kj::String path;  // opened and mapped shared at the region's offset
};

// Throws (one line, naming what is wrong) when the image cannot be turned into a
// plan, e.g. saved pages that lie outside every mapped region.
RestorePlan buildRestorePlan(FileReader& image, kj::ArrayPtr<const RegionFile> mapFrom = nullptr);

}  // namespace mig::image
