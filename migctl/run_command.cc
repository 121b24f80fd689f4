// `migctl run -- PROGRAM ARGS...`: runs PROGRAM under libmig.so (the same as
// LD_PRELOAD=/path/to/libmig.so PROGRAM ARGS..., without knowing the path).
#include "image/image_error.h"
#include "migctl/commands.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>

namespace mig::migctl {
namespace {

constexpr const char* kUsage =
    "usage: migctl run [--] PROGRAM [ARGS...]\n"
    "\n"
    "Runs PROGRAM under mig (preloading libmig.so), so that it can be checkpointed\n"
    "and migrated. The library is found next to migctl, or set MIG_LIBMIG to it.\n";

std::string findLibmig() {
  if (const char* env = getenv("MIG_LIBMIG")) return env;
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = '\0';
    std::string dir(self, strrchr(self, '/') - self);
    for (const char* rel : {"/libmig.so", "/../shim/libmig.so", "/../lib/libmig.so",
                            "/../lib/x86_64-linux-gnu/libmig.so"}) {
      std::string p = dir + rel;
      if (access(p.c_str(), R_OK) == 0) {
        char real[PATH_MAX];
        return realpath(p.c_str(), real) ? real : p;
      }
    }
  }
  image::fail(kj::str("cannot find libmig.so next to migctl; set MIG_LIBMIG to its path"));
}

}  // namespace

int runCommand(int argc, char** argv) {
  int first = 0;
  if (first < argc && (strcmp(argv[first], "--help") == 0 || strcmp(argv[first], "-h") == 0)) {
    fputs(kUsage, stdout);
    return 0;
  }
  if (first < argc && strcmp(argv[first], "--") == 0) ++first;
  if (first >= argc) {
    fprintf(stderr, "migctl run: no program given\n%s", kUsage);
    return 2;
  }
  std::string lib = findLibmig();
  const char* old = getenv("LD_PRELOAD");
  std::string preload = old && *old ? lib + ":" + old : lib;
  setenv("LD_PRELOAD", preload.c_str(), 1);
  execvp(argv[first], argv + first);
  fprintf(stderr, "migctl run: cannot run %s: %s\n", argv[first], strerror(errno));
  return 127;
}

}  // namespace mig::migctl
