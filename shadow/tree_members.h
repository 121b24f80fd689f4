// A tree hop's members as shadowd hands them to the hop's sender (MIG_TREE_MEMBERS) and
// reads them back once it is done: "PID:JOBID:TOKENHEX[:VPID]" per member but the root,
// separated by spaces (VPID: its PID at home, when PID is not). Tokens stay out of
// command lines.
#pragma once

#include "shadow/hex.h"

#include <kj/vector.h>

#include <cstdint>
#include <cstring>
#include <sys/types.h>

namespace mig::shadow {

struct TreeMemberEntry {
  pid_t pid = 0;   // its PID on the sending host
  pid_t vpid = 0;  // at home (its PID as it knows it, everywhere)
  uint64_t jobId = 0;
  kj::Array<kj::byte> token;
};

// Null when `text` is malformed.
inline kj::Maybe<kj::Vector<TreeMemberEntry>> parseTreeMembers(const char* text) {
  kj::Vector<TreeMemberEntry> out;
  const char* p = text;
  while (*p != '\0') {
    while (*p == ' ') ++p;
    if (*p == '\0') break;
    char* end = nullptr;
    TreeMemberEntry m;
    m.pid = static_cast<pid_t>(strtol(p, &end, 10));
    if (end == p || *end != ':') return nullptr;
    p = end + 1;
    m.jobId = strtoull(p, &end, 10);
    if (end == p || *end != ':') return nullptr;
    p = end + 1;
    size_t n = strcspn(p, ": ");
    if (n != 64 || strspn(p, "0123456789abcdefABCDEF") < n) return nullptr;
    m.token = unhex(kj::heapString(p, n));
    p += n;
    m.vpid = m.pid;
    if (*p == ':') {
      ++p;
      m.vpid = static_cast<pid_t>(strtol(p, &end, 10));
      p = end;
    }
    if (m.pid <= 0 || m.vpid <= 0 || m.jobId == 0 || (*p != ' ' && *p != '\0')) return nullptr;
    out.add(kj::mv(m));
  }
  return kj::mv(out);
}

}  // namespace mig::shadow
