// Where this host's shadowd listens for local clients (migctl, deputies) unless told
// otherwise: shadowd and migctl must agree on it.
#pragma once

#include <kj/string.h>

#include <cstdlib>
#include <unistd.h>

namespace mig::shadow {

inline kj::String defaultLocalSocket() {
  const char* env = getenv("MIG_SHADOWD_SOCKET");
  return env != nullptr && *env != '\0' ? kj::str(env) : kj::str("/tmp/mig-", getuid(), "/shadowd.sock");
}

}  // namespace mig::shadow
