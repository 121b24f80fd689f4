// migctl: the command users type. Dispatches sub-commands; each lives in its own
// file and returns the process exit status (0 ok, 1 failure, 2 usage error).
#include "migctl/commands.h"
#include "resources/caller_fds.h"
#include "shadow/send_command.h"

#include <kj/exception.h>

#include <cstdio>
#include <cstring>

namespace {

constexpr const char* kUsage =
    "usage: migctl COMMAND [ARGS...]\n"
    "\n"
    "Commands:\n"
    "  run [--] PROGRAM [ARGS...]\n"
    "                  run a program under mig (preloads libmig.so)\n"
    "  checkpoint PID -o FILE [--stop] [--only]\n"
    "                  write a checkpoint image of a process running under libmig.so\n"
    "                  and its descendants (--only: the process alone)\n"
    "  restart FILE [--force]\n"
    "                  become the process saved in FILE, continuing where it was\n"
    "  image info FILE [--verify] [--plan]\n"
    "                  print a checkpoint image's header and sections; --verify checks\n"
    "                  every checksum, --plan shows the restore plan derived from it\n"
    "  migrate PID --to NODE|HOST:PORT\n"
    "                  move a running job to another host, live (needs shadowd)\n"
    "  list            jobs on this host: where they run, their state\n"
    "  nodes           the hosts this host's shadowd knows, and their load\n"
    "  help            this text\n"
    "\n"
    "Run 'migctl COMMAND --help' for one command's options.\n";

}  // namespace

int main(int argc, char** argv) {
  // Before anything is opened: only these may stand in for a restarted job's streams.
  const auto caller = mig::resources::CallerFds::atStartup();
  if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "-h") == 0) {
    fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  try {
    if (strcmp(argv[1], "image") == 0) return mig::migctl::imageCommand(argc - 2, argv + 2);
    if (strcmp(argv[1], "run") == 0) return mig::migctl::runCommand(argc - 2, argv + 2);
    if (strcmp(argv[1], "checkpoint") == 0) return mig::migctl::checkpointCommand(argc - 2, argv + 2);
    if (strcmp(argv[1], "restart") == 0) return mig::migctl::restartCommand(argc - 2, argv + 2, caller);
    if (strcmp(argv[1], "migrate") == 0) return mig::migctl::migrateCommand(argc - 2, argv + 2);
    if (strcmp(argv[1], "list") == 0) return mig::migctl::listCommand(argc - 2, argv + 2);
    if (strcmp(argv[1], "nodes") == 0) return mig::migctl::nodesCommand(argc - 2, argv + 2);
    if (strcmp(argv[1], "send") == 0) return mig::shadow::sendCommand(argc - 2, argv + 2);
  } catch (const kj::Exception& e) {
    fprintf(stderr, "migctl: %s\n", e.getDescription().cStr());
    return 1;
  }
  fprintf(stderr, "migctl: unknown command '%s' (see 'migctl --help')\n", argv[1]);
  return 2;
}
