// How shadowd and its tools report what went wrong: a kj::Exception whose description
// is exactly one line a user can act on (it may travel to another host in an RPC
// answer and end up printed by `migctl migrate`).
#pragma once

#include <kj/exception.h>
#include <kj/string.h>

#include <cstring>
#include <string>

namespace mig::shadow {

[[noreturn]] inline void fail(kj::String message) {
  kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::mv(message)));
}

inline void require(bool ok, kj::StringPtr message) {
  if (!ok) fail(kj::str(message));
}

// The user's line out of an error that crossed processes and hosts: without the
// "remote exception: " and "migctl: " prefixes each hop adds, and without the
// "; name = value" details kj appends for programmers.
inline kj::String oneLine(kj::StringPtr description) {
  std::string d = description.cStr();
  for (bool again = true; again;) {
    again = false;
    for (const char* prefix : {"remote exception: ", "migctl: ", "migctl send: "}) {
      if (d.compare(0, strlen(prefix), prefix) == 0) {
        d.erase(0, strlen(prefix));
        again = true;
      }
    }
  }
  size_t detail = d.find("; ");
  if (detail != std::string::npos && d.find(" = ", detail) != std::string::npos) d.erase(detail);
  while (!d.empty() && d.back() == '\n') d.pop_back();
  return kj::str(d.c_str());
}

}  // namespace mig::shadow
