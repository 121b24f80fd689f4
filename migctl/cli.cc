// migctl's and shadowd's kj::ProcessContext: see cli.h.
#include "migctl/cli.h"

#include <kj/debug.h>

#include <cerrno>
#include <cstdio>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace mig::cli {

void Context::exit() {
  fflush(stdout);
  ::exit(errors_ && status == 0 ? 1 : status);
}

void Context::warning(kj::StringPtr message) { fprintf(stderr, "%s\n", message.cStr()); }

void Context::error(kj::StringPtr message) {
  errors_ = true;
  fprintf(stderr, "%s\n", message.cStr());
}

void Context::exitError(kj::StringPtr message) {
  // MainBuilder says "PROG: what\nTry 'PROG --help' for more information.": one line.
  kj::StringPtr text = message;
  kj::String oneLine;
  KJ_IF_MAYBE(nl, message.findFirst('\n')) {
    kj::StringPtr rest = message.slice(*nl + 1);
    kj::String hint;
    if (rest.startsWith("Try '")) {
      kj::StringPtr q = rest.slice(5);
      KJ_IF_MAYBE(end, q.findFirst('\'')) { hint = kj::heapString(q.slice(0, *end)); }
    }
    oneLine = hint.size() > 0 ? kj::str(message.slice(0, *nl), " (try '", hint, "')")
                              : kj::str(message.slice(0, *nl), " ", rest);
    text = oneLine;
  }
  fprintf(stderr, "%s\n", text.cStr());
  fflush(stdout);
  ::exit(2);
}

void Context::exitInfo(kj::StringPtr message) {
  fputs(message.cStr(), stdout);
  if (!message.endsWith("\n")) fputc('\n', stdout);
  fflush(stdout);
  ::exit(0);
}

// --verbose: KJ's and Cap'n Proto's informational log lines on stderr.
void Context::increaseLoggingVerbosity() { kj::_::Debug::setLogLevel(kj::LogSeverity::INFO); }

void Context::usageError(kj::StringPtr command, kj::StringPtr message) {
  exitError(kj::str(command, ": ", message, "\nTry '", command, " --help' for more information."));
}

kj::MainFunc acceptDashH(kj::MainFunc main) {
  return [main = kj::mv(main)](kj::StringPtr programName, kj::ArrayPtr<const kj::StringPtr> params) mutable {
    auto copy = kj::heapArray<kj::StringPtr>(params);
    for (auto& p : copy) {
      if (p == "--") break;
      if (p == "-h") p = "--help";
    }
    main(programName, copy);
  };
}

kj::MainFunc joinNegativeValues(kj::MainFunc main, kj::StringPtr option) {
  return [main = kj::mv(main), option](kj::StringPtr programName, kj::ArrayPtr<const kj::StringPtr> params) mutable {
    kj::Vector<kj::String> joined;  // owns the joined words
    kj::Vector<kj::StringPtr> out;
    for (size_t i = 0; i < params.size(); ++i) {
      if (params[i] == "--") {
        out.addAll(params.slice(i, params.size()));
        break;
      }
      if (params[i] == option && i + 1 < params.size() && params[i + 1].startsWith("-")) {
        joined.add(kj::str(option, "=", params[i + 1]));
        out.add(joined.back());
        ++i;
      } else {
        out.add(params[i]);
      }
    }
    main(programName, out.asPtr());
  };
}

kj::Array<kj::StringPtr> params(int argc, char** argv) {
  auto out = kj::heapArrayBuilder<kj::StringPtr>(argc > 1 ? argc - 1 : 0);
  for (int i = 1; i < argc; ++i) out.add(argv[i]);
  return out.finish();
}

kj::Maybe<kj::String> parseCount(kj::StringPtr text, long min, long max, long& out) {
  char* end = nullptr;
  errno = 0;
  long n = strtol(text.cStr(), &end, 10);
  if (end == text.cStr() || *end != '\0' || errno != 0 || n < min || n > max) {
    return kj::str("takes a whole number from ", min, " to ", max, ", not '", text, "'");
  }
  out = n;
  return nullptr;
}

kj::Maybe<kj::String> parseSecondsMs(kj::StringPtr text, double maxSeconds, uint64_t& outMs) {
  char* end = nullptr;
  double s = strtod(text.cStr(), &end);
  if (end == text.cStr() || *end != '\0' || !(s > 0) || s > maxSeconds) {
    return kj::str("takes a number of seconds > 0, not '", text, "'");
  }
  outMs = static_cast<uint64_t>(s * 1000 + 0.5);
  return nullptr;
}

kj::Maybe<std::string> findBesideSelf(std::initializer_list<const char*> relative, int mode) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return nullptr;
  self[n] = '\0';
  std::string dir(self, strrchr(self, '/') - self);
  for (const char* rel : relative) {
    std::string p = dir + rel;
    if (access(p.c_str(), mode) == 0) return p;
  }
  return nullptr;
}

}  // namespace mig::cli
