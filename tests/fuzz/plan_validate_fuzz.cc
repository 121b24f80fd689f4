// libFuzzer target: arbitrary bytes as a restore plan. The freestanding validator
// must never read outside the buffer, and whatever it accepts must be safe to walk.
#include "image/plan_check.h"

#include <cstdint>
#include <cstring>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint64_t> aligned((size + 7) / 8);
  if (size > 0) memcpy(aligned.data(), data, size);
  const auto* h = reinterpret_cast<const mig::plan::Header*>(aligned.data());
  if (mig::plan::validate(h, size) != nullptr) return 0;
  // Accepted: every reference must be usable.
  uint64_t sum = 0;
  const auto* r = mig::plan::regions(h);
  for (uint32_t i = 0; i < h->regionCount; ++i) {
    if (r[i].path != mig::plan::kNoString) sum += strlen(mig::plan::string(h, r[i].path));
  }
  const auto* p = mig::plan::pages(h);
  for (uint32_t i = 0; i < h->pagesCount; ++i) sum += r[p[i].region].start;
  const auto* t = mig::plan::threads(h);
  for (uint32_t i = 0; i < h->threadCount; ++i) {
    const auto* frame = static_cast<const uint8_t*>(mig::plan::blob(h, t[i].sigframe));
    for (uint64_t b = 0; b < t[i].sigframeLen; ++b) sum += frame[b];
  }
  sum += strlen(mig::plan::string(h, h->imagePath));
  return sum == 42 ? 0 : 0;
}
