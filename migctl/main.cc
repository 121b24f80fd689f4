// migctl: the command users type. Dispatches sub-commands (kj::MainBuilder); each
// lives in its own file and declares its options there. Exit status: 0 ok,
// 1 failure, 2 usage error.
#include "migctl/commands.h"
#include "resources/caller_fds.h"
#include "shadow/send_command.h"

#include <kj/exception.h>

#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  // Before anything is opened: only these may stand in for a restarted job's streams.
  const auto caller = mig::resources::CallerFds::atStartup();
  // `send` is shadowd's, not a user's: not in the help.
  if (argc >= 2 && strcmp(argv[1], "send") == 0) {
    try {
      return mig::shadow::sendCommand(argc - 2, argv + 2);
    } catch (const kj::Exception& e) {
      fprintf(stderr, "migctl: %s\n", e.getDescription().cStr());
      return 1;
    }
  }
  using namespace mig::migctl;
  using mig::cli::acceptDashH;  // "-h" before a command's "--" (run: its program's)
  mig::cli::Context cli("migctl");
  auto main = kj::MainBuilder(cli, mig::cli::kVersion,
                              "Runs, checkpoints, restarts and moves processes under mig.",
                              "Run 'migctl COMMAND --help' for one command's options.")
      .addSubCommand("run", [&]() { return runMain(cli); }, "run a program under mig (preloads libmig.so)")
      .addSubCommand("checkpoint", [&]() { return acceptDashH(checkpointMain(cli)); },
                     "write a checkpoint image of a process running under libmig.so")
      .addSubCommand("restart", [&]() { return acceptDashH(restartMain(cli, caller)); },
                     "become the process saved in an image, continuing where it was")
      .addSubCommand("image", [&]() { return acceptDashH(imageMain(cli)); },
                     "image info FILE: a checkpoint image's header and sections")
      .addSubCommand("migrate", [&]() { return acceptDashH(migrateMain(cli)); },
                     "move a running job to another host, live (needs shadowd)")
      .addSubCommand("list", [&]() { return acceptDashH(listMain(cli)); },
                     "jobs on this host: where they run, their state")
      .addSubCommand("nodes", [&]() { return acceptDashH(nodesMain(cli)); },
                     "the hosts this host's shadowd knows, and their load")
      .addSubCommand("history", [&]() { return acceptDashH(historyMain(cli)); },
                     "recent moves asked of this host's shadowd: when, where, frozen how long, outcome")
      .addSubCommand("drain", [&]() { return acceptDashH(drainMain(cli)); },
                     "a host takes no new jobs and its guests leave it")
      .addSubCommand("undrain", [&]() { return acceptDashH(undrainMain(cli)); },
                     "a drained host takes jobs again")
      .build();
  auto params = mig::cli::params(argc, argv);
  // Only migctl's own option is -h: what follows the command is the command's.
  if (params.size() > 0 && params[0] == "-h") params[0] = "--help";
  try {
    main("migctl", params);
  } catch (const kj::Exception& e) {
    fprintf(stderr, "migctl: %s\n", e.getDescription().cStr());
    return 1;
  }
  fflush(stdout);
  return cli.status;
}
