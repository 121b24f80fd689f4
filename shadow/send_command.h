// `migctl send`, the step of a migration hop that shadowd runs as a helper process
// (send_command.cc). Errors that end it are thrown as kj::Exception, which migctl's
// main() prints as one line.
#pragma once

namespace mig::shadow {

// The arguments after "send"; returns the exit status: 0 moved, 1 failed with the job
// where it was, or one of these (shadowd's runSender, daemon.cc, tells the user).
int sendCommand(int argc, char** argv);

enum SenderExit : int {
  // The job was given up here but the destination did not confirm that it runs.
  kCommittedUnconfirmed = 5,
  // A post-copy hop lost its destination after the commit, before it had every page:
  // the job was ended.
  kPostcopyLost = 6,
  // A hop home's restore failed after the commit and the deputy came back
  // (deputy/homecoming.h): the job was resumed here.
  kHomeRestoreFailed = 7,
  // The job's process at home ended as it became its deputy, before it registered: the
  // hop went through, and home's shadowd ends the job at the destination.
  kDeputyDied = 8,
};

}  // namespace mig::shadow
