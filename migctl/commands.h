// The sub-commands of migctl. Each takes the arguments after its name and returns
// the exit status; errors that end the command are thrown as kj::Exception with a
// one-line description, which main() prints.
#pragma once

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

int imageCommand(int argc, char** argv);
int checkpointCommand(int argc, char** argv);
// `caller`: the fds main() found open (resources::CallerFds::atStartup).
int restartCommand(int argc, char** argv, const resources::CallerFds& caller);
int runCommand(int argc, char** argv);
int migrateCommand(int argc, char** argv);
int listCommand(int argc, char** argv);
int nodesCommand(int argc, char** argv);

}  // namespace mig::migctl
