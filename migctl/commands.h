// The sub-commands of migctl. Each takes the arguments after its name and returns
// the exit status; errors that end the command are thrown as kj::Exception with a
// one-line description, which main() prints.
#pragma once

namespace mig::migctl {

int imageCommand(int argc, char** argv);
int checkpointCommand(int argc, char** argv);
int restartCommand(int argc, char** argv);
int runCommand(int argc, char** argv);
int migrateCommand(int argc, char** argv);
int listCommand(int argc, char** argv);
int nodesCommand(int argc, char** argv);

}  // namespace mig::migctl
