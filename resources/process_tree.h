// The processes a checkpoint of PID takes: PID and its descendants by parent link
// (/proc/N/stat's ppid), root first and every parent before its children. A
// daemon that double-forked out of the tree (reparented to init or a subreaper) is
// not a member even if it is still in the root's session: it is not the job's to
// stop. Zombies are members too, with the wait status their parent will reap.
#pragma once

#include <kj/vector.h>
#include <string>
#include <sys/types.h>

namespace mig::resources {

struct TreeProcess {
  pid_t pid;
  pid_t ppid;
  pid_t pgid;
  pid_t sid;
  bool zombie;
  int waitStatus;       // for a zombie: as waitpid() reports it (/proc/PID/stat exit_code)
  std::string command;  // /proc/PID/comm
};

// Parses one /proc/PID/stat line; false when it is not one.
bool parseStat(const std::string& stat, TreeProcess& out);

// `root` and its descendants as they are now, never the calling process (throws, one
// line, when `root` is gone).
// The tree can change until every member is frozen; the caller checks again then.
kj::Vector<TreeProcess> listTree(pid_t root);

// The descendants of `root` that are the job's, as a migration sees them: all but
// mig's own helper, the `migctl` a program that moves itself (mig.h) runs as its
// child (a live child named migctl, or running the program `helperExe`), and what
// that helper started. Parents before their children, zombies included.
kj::Vector<TreeProcess> jobDescendants(pid_t root, const char* helperExe);

}  // namespace mig::resources
