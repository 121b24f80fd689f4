// The answers a deputy carries into the job when a hop brings the job back home
// (deputy/homecoming.h). A thread that was waiting for home's answer to a call when
// the job was frozen sends the call again where it resumes (connection.cc); back
// home there is no deputy to answer it, so the call runs here instead, unless the
// deputy had run it already: then its answer, kept here, is the call's result, and
// the call is not run twice. The deputy writes the table into a memfd whose number
// reaches the shim in Config::carriedFd; the shim maps it read-only.
// Fixed layout, no pointers: it crosses two execs.
#pragma once

#include <stdint.h>

namespace mig::forward {

inline constexpr uint64_t kCarriedMagic = 0x59525241434749ull;  // "IGCARRY"

struct CarriedHeader {
  uint64_t magic;   // kCarriedMagic
  uint32_t count;   // entries that follow
  uint32_t reserved;
};

// One answer: the thread (RequestHeader::thread) and seq of its call, then `length`
// bytes of the reply as the deputy sent it (rsc::ReplyHeader first), padded to 8.
struct CarriedEntry {
  uint32_t thread;
  uint32_t reserved;
  uint64_t seq;
  uint64_t length;
};

inline constexpr uint64_t carriedPadded(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

}  // namespace mig::forward
