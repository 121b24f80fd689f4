// Job tokens as text: hex, carried in the environment (never on command lines).
#pragma once

#include <kj/array.h>
#include <kj/debug.h>
#include <kj/string.h>

#include <cstdlib>

namespace mig::shadow {

inline kj::String hex(kj::ArrayPtr<const kj::byte> bytes) {
  static const char digits[] = "0123456789abcdef";
  auto out = kj::heapString(bytes.size() * 2);
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 15];
  }
  return out;
}

inline kj::Array<kj::byte> unhex(kj::StringPtr text) {
  KJ_REQUIRE(text.size() % 2 == 0, "bad hex string");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    KJ_FAIL_REQUIRE("bad hex string");
  };
  auto out = kj::heapArray<kj::byte>(text.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<kj::byte>(nibble(text[2 * i]) << 4 | nibble(text[2 * i + 1]));
  }
  return out;
}

// The environment variable that carries a job's token (hex) to the programs that
// need it: never on a command line, which every user of the host can read.
inline constexpr const char* kTokenEnv = "MIG_JOB_TOKEN";
// A tree's move from its home (shadow/send_command.cc): the job record of each live
// descendant, "PID:JOBID:TOKENHEX" separated by spaces.
inline constexpr const char* kTreeMembersEnv = "MIG_TREE_MEMBERS";

// The token from the environment; throws if missing or malformed.
inline kj::Array<kj::byte> tokenFromEnv() {
  const char* t = getenv(kTokenEnv);
  KJ_REQUIRE(t != nullptr, "no job token in the environment");
  return unhex(t);
}

}  // namespace mig::shadow
