// rsc/payload.h: the payload framing of rsc/wire.h (byte count, bytes, zero padding
// to 8) and which argument kinds travel which way, shared by the shim's marshalling
// and the deputy's dispatcher so both read the format the same way.
// Header-only and async-signal-safe: no libc, no allocation.
#pragma once

#include "rsc/forward_table.h"

#include <stdint.h>

namespace mig::rsc {

// byteCount of a payload that stands for a NULL pointer (a path or struct argument
// the application passed as NULL); no bytes follow it.
inline constexpr uint64_t kNullPayload = UINT64_MAX;

inline constexpr uint64_t kPayloadHeader = sizeof(uint64_t);

inline constexpr uint64_t pad8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

// Bytes one payload of `count` data bytes occupies on the wire.
inline constexpr uint64_t payloadSize(uint64_t count) {
  return kPayloadHeader + (count == kNullPayload ? 0 : pad8(count));
}

inline constexpr bool isInput(Arg k) {
  return k == Arg::InBuf || k == Arg::Path || k == Arg::InStruct || k == Arg::InOutStruct;
}

inline constexpr bool isOutput(Arg k) {
  return k == Arg::OutBuf || k == Arg::OutStruct || k == Arg::InOutStruct;
}

inline constexpr bool isStruct(Arg k) {
  return k == Arg::InStruct || k == Arg::OutStruct || k == Arg::InOutStruct;
}

// Messages are byte arrays with no alignment promise: go through memcpy, which the
// compiler inlines for these fixed sizes.
inline uint64_t loadU64(const uint8_t* p) {
  uint64_t v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

inline void storeU64(uint8_t* p, uint64_t v) { __builtin_memcpy(p, &v, sizeof v); }

// True when the `n` bytes at p are all zero (payload padding must be).
inline bool allZero(const uint8_t* p, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

}  // namespace mig::rsc
