// `migctl send`, the step of a migration hop that shadowd runs as a helper process
// (send_command.cc). Errors that end it are thrown as kj::Exception, which migctl's
// main() prints as one line.
#pragma once

namespace mig::shadow {

// The arguments after "send"; returns the exit status.
int sendCommand(int argc, char** argv);

}  // namespace mig::shadow
