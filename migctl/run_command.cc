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

#include <kj/vector.h>

namespace mig::migctl {
namespace {

constexpr const char* kAbout =
    "Runs PROGRAM under mig (preloading libmig.so), so that it can be checkpointed "
    "and migrated. The library is found next to migctl, or set MIG_LIBMIG to it.";

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

[[noreturn]] void run(kj::ArrayPtr<const kj::StringPtr> program) {
  std::string lib = findLibmig();
  const char* old = getenv("LD_PRELOAD");
  std::string preload = old && *old ? lib + ":" + old : lib;
  setenv("LD_PRELOAD", preload.c_str(), 1);
  auto args = kj::heapArray<char*>(program.size() + 1);
  for (size_t i = 0; i < program.size(); ++i) args[i] = const_cast<char*>(program[i].cStr());
  args[program.size()] = nullptr;
  execvp(args[0], args.begin());
  fprintf(stderr, "migctl run: cannot run %s: %s\n", args[0], strerror(errno));
  fflush(stdout);
  _exit(127);
}

}  // namespace

kj::MainFunc runMain(cli::Context& cli) {
  auto program = kj::heap<kj::Vector<kj::StringPtr>>();
  auto& p = *program;
  auto main = kj::MainBuilder(cli, cli::kVersion, kAbout)
      .expectArg("PROGRAM", [&p](kj::StringPtr v) -> kj::MainBuilder::Validity {
        p.add(v);
        return true;
      })
      .expectZeroOrMoreArgs("ARGS", [&p](kj::StringPtr v) -> kj::MainBuilder::Validity {
        p.add(v);
        return true;
      })
      .callAfterParsing([&p]() -> kj::MainBuilder::Validity { run(p); })
      .build();
  return [program = kj::mv(program), main = kj::mv(main)](kj::StringPtr name,
                                                           kj::ArrayPtr<const kj::StringPtr> params) mutable {
    // Everything from PROGRAM on is the program's, its options too: `migctl run
    // PROGRAM -x` is `migctl run -- PROGRAM -x`. Only migctl's --help/-h come before it.
    kj::Vector<kj::StringPtr> args;
    if (params.size() > 0 && (params[0] == "--help" || params[0] == "-h")) {
      args.add("--help");
    } else {
      if (params.size() == 0 || params[0] != "--") args.add("--");
      args.addAll(params);
    }
    main(name, args.asPtr());
  };
}

}  // namespace mig::migctl
