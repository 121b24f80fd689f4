// The processes a checkpoint of PID takes: PID and its descendants by parent link
// (/proc/N/stat's ppid), root first and every parent before its children. A
// daemon that double-forked out of the tree (reparented to init or a subreaper) is
// not a member even if it is still in the root's session: it is not the job's to
// stop. Zombies are members too, with the wait status their parent will reap.
#pragma once

#include "resources/proc_file.h"  // processRuns

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

// Whether PID exists at all, a zombie included (its number still taken).
bool processExists(pid_t pid);

// `root` and its descendants as they are now, never the calling process (throws, one
// line, when `root` is gone).
// The tree can change until every member is frozen; the caller checks again then.
kj::Vector<TreeProcess> listTree(pid_t root);

// The same tree found from the root down through /proc/PID/task/TID/children: only the
// tree's own processes are read, where listTree reads every process on the host (tens
// of ms on a busy one, which a migration would spend inside the freeze). Valid only
// while no member can fork or reap (every live member frozen), as the kernel's lists
// are exact only then (proc(5)). Null when unsure (a kernel without those files, a
// process that cannot be read): the caller then takes listTree.
kj::Maybe<kj::Vector<TreeProcess>> listFrozenTree(pid_t root);

// Whether the process `pid` surely has no child: every thread's children list is
// empty. Valid only while it is frozen (it cannot fork, so an empty list stays empty
// while it is read). False when unsure: a full look decides.
bool surelyChildless(pid_t pid);

// The descendants of `root` that are the job's, as a migration sees them: all but
// mig's own helper, the `migctl` a program that moves itself (mig.h) runs as its
// child (a live child named migctl, or running the program `helperExe`), and what
// that helper started. Parents before their children, zombies included.
// frozen: every live member is frozen, so listFrozenTree may be used.
kj::Vector<TreeProcess> jobDescendants(pid_t root, const char* helperExe, bool frozen = false);

}  // namespace mig::resources
