// How migctl and shadowd meet kj::MainBuilder (options, generated --help): a
// ProcessContext whose usage errors are one line that says what is wrong and to
// try --help, with exit status 2, and whose commands report their own exit status.
// KJ's stock context exits 1 on a usage error and prints two lines.
// Also where migctl finds its companion files (libmig.so, mig-restore).
#pragma once

#include <kj/main.h>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <kj/string.h>
#include <kj/vector.h>

namespace mig::cli {

class Context final : public kj::ProcessContext {
 public:
  explicit Context(kj::StringPtr programName) : name_(programName) {}

  kj::StringPtr getProgramName() override { return name_; }
  [[noreturn]] void exit() override;
  void warning(kj::StringPtr message) override;
  void error(kj::StringPtr message) override;
  [[noreturn]] void exitError(kj::StringPtr message) override;
  [[noreturn]] void exitInfo(kj::StringPtr message) override;
  void increaseLoggingVerbosity() override;

  // What a command body returns (0 ok, 1 failure); main() exits with it.
  int status = 0;
  // A usage error found by a command after parsing: one line, exit 2.
  [[noreturn]] void usageError(kj::StringPtr command, kj::StringPtr message);

 private:
  kj::StringPtr name_;
  bool errors_ = false;
};

// The version every command's --version prints.
constexpr const char* kVersion = "mig 0.1.0";

// A command's MainFunc that owns the options its builder's callbacks fill in.
template <typename Options>
kj::MainFunc owning(kj::Own<Options> options, kj::MainFunc main) {
  return [options = kj::mv(options), main = kj::mv(main)](kj::StringPtr programName,
                                                          kj::ArrayPtr<const kj::StringPtr> params) mutable {
    main(programName, params);
  };
}

// "-h" means --help, as it always did (KJ knows only --help), in the options
// before a "--".
kj::MainFunc acceptDashH(kj::MainFunc main);

// MainBuilder takes a value that starts with '-' for a missing value; an option
// whose value may be negative ("--realtime-offset-ns -5") is joined to it
// ("--realtime-offset-ns=-5") before parsing, as its callers always wrote it apart.
kj::MainFunc joinNegativeValues(kj::MainFunc main, kj::StringPtr option);

// argv as MainBuilder takes it (what follows the program name).
kj::Array<kj::StringPtr> params(int argc, char** argv);

// A number option: whole number in [min, max], else the reason.
kj::Maybe<kj::String> parseCount(kj::StringPtr text, long min, long max, long& out);
// Seconds ("2.5") in (0, maxSeconds], as milliseconds, else the reason.
kj::Maybe<kj::String> parseSecondsMs(kj::StringPtr text, double maxSeconds, uint64_t& outMs);

// A companion file of this program (libmig.so, mig-restore): the first of `relative`
// (each "/name", joined to the directory of this executable: as installed or as in the
// build tree) that access(2) allows with `mode`; nothing when none is there.
kj::Maybe<std::string> findBesideSelf(std::initializer_list<const char*> relative, int mode);

}  // namespace mig::cli
