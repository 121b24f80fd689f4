// Typed access to the next definition of an interposed libc function.
#pragma once

#include <dlfcn.h>

namespace mig::shim {

// Resolves once, on first use. dlsym does not call any function the shim
// interposes, so this is safe from inside the wrappers.
#define MIG_REAL(name)                                                              \
  ([]() {                                                                           \
    static auto fn = reinterpret_cast<decltype(&::name)>(dlsym(RTLD_NEXT, #name)); \
    return fn;                                                                      \
  }())

}  // namespace mig::shim
