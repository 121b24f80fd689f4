// The sub-commands of migctl. Each declares its options in one place, a
// kj::MainBuilder in its own file (generated --help), and its body sets
// cli.status; errors that end the command are thrown as kj::Exception with a
// one-line description, which main() prints (exit 1); usage errors are one line
// (exit 2, cli::Context).
#pragma once

#include "migctl/cli.h"
#include "resources/caller_fds.h"

#include <cerrno>
#include <cstdint>
#include <cstdlib>

namespace mig::migctl {

// A PID on the command line: decimal, positive, nothing after it. Commands say
// "'abc' is not a process ID" (exit 2) when this is false.
inline bool parsePid(const char* text, long& pid) {
  char* end = nullptr;
  errno = 0;
  pid = strtol(text, &end, 10);
  return end != text && *end == '\0' && errno == 0 && pid > 0 && pid <= INT32_MAX;
}

kj::MainFunc imageMain(cli::Context& cli);
kj::MainFunc checkpointMain(cli::Context& cli);
// `caller`: the fds main() found open (resources::CallerFds::atStartup).
kj::MainFunc restartMain(cli::Context& cli, const resources::CallerFds& caller);
kj::MainFunc runMain(cli::Context& cli);
kj::MainFunc migrateMain(cli::Context& cli);
kj::MainFunc listMain(cli::Context& cli);
kj::MainFunc nodesMain(cli::Context& cli);
kj::MainFunc historyMain(cli::Context& cli);
kj::MainFunc drainMain(cli::Context& cli);
kj::MainFunc undrainMain(cli::Context& cli);

}  // namespace mig::migctl
