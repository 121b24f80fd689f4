// See tree_restart.h. Why the members get their own PIDs back (clone3 set_tid)
// rather than virtual ones: every relation between members then holds in the
// kernel itself (wait4 results, kill, process groups and sessions, zombies), with
// no table in the shim. It needs the PIDs free and the privilege to choose them
// (CAP_SYS_ADMIN over the PID namespace); without either the restart is refused
// with one line, before any member is made.
#include "migctl/tree_restart.h"

#include "image/image_error.h"
#include "resources/fd_restore.h"
#include "resources/process_tree.h"
#include "resources/shared_memory.h"
#include "resources/sysv_ipc.h"
#include "restore/layout.h"

#include <kj/io.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <set>
#include <string>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mig::migctl {

using image::fail;

namespace {

// struct clone_args up to set_tid (CLONE_ARGS_SIZE_VER1), as in linux/sched.h.
struct CloneArgs {
  uint64_t flags, pidfd, childTid, parentTid, exitSignal, stack, stackSize, tls, setTid, setTidSize;
};

// fork() with the child's PID chosen: 0 in the child, its PID in the parent.
pid_t forkAs(pid_t pid, const char* command) {
  CloneArgs args{};
  args.exitSignal = SIGCHLD;
  pid_t want = pid;
  args.setTid = reinterpret_cast<uintptr_t>(&want);
  args.setTidSize = 1;
  long r = syscall(SYS_clone3, &args, sizeof(args));
  if (r < 0) {
    int err = errno;
    if (err == EEXIST) fail(kj::str("cannot restart the tree: PID ", pid, " (", command, ") is taken by another process now; "
                                    "end it (or the tree still running from this image) and try again"));
    if (err == EPERM) fail(kj::str("cannot restart the tree: giving its processes back their PIDs needs root "
                                   "(CAP_SYS_ADMIN); run migctl restart as root"));
    fail(kj::str("cannot restart the tree: cannot make process ", pid, " (", command, "): ", strerror(err)));
  }
  return static_cast<pid_t>(r);
}

struct Ctx {
  image::FileReader& img;
  const char* path;
  const resources::FileRestoreOptions& options;
  const resources::CallerFds& caller;
  TreeMemberRestart member;
  const resources::TreeSharedMemory& shared;
  const MigratedOptions* migrated = nullptr;  // a migrated job's children born away (restartBornAway)
};

bool isMember(image::schema::Tree::Reader tree, int32_t pid) {
  for (auto m : tree.getMembers()) if (m.getVpid() == pid && !m.getZombie()) return true;
  return false;
}

// Reports `why` to the restart process and ends this half-made member.
[[noreturn]] void memberFailed(const Ctx& c, kj::StringPtr why) {
  std::string line = std::string("E") + why.cStr() + "\n";
  if (write(c.member.readyFd, line.data(), line.size()) < 0) {
    // Past "go" (the ready pipe is closed): say it where the restart's lines go.
    dprintf(resources::restartMessages(), "migctl restart: %s\n", why.cStr());
  }
  _exit(1);
}

// A zombie: ends at once, as it ended.
[[noreturn]] void becomeZombie(int status) {
  if (WIFSIGNALED(status)) {
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);  // its core was dumped (or not) the first time
    signal(WTERMSIG(status), SIG_DFL);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, nullptr);
    raise(WTERMSIG(status));
  }
  _exit(WEXITSTATUS(status));
}

// A member's process: with its PID as the tree had it; a migrated job's child born
// away with its real PID of the host it comes from (its virtual PID is kAwayPidBase +
// that PID: its parent's shim knows it by that, child_pids.h).
pid_t forkMember(const Ctx& c, image::schema::TreeMember::Reader m) {
  return forkAs(c.migrated != nullptr ? m.getRealPid() : m.getVpid(), m.getCommand().cStr());
}

// In the process that is to be member `index`: its session and group, its
// children, then itself.
[[noreturn]] void runMember(Ctx& c, uint32_t index) {
  try {
    auto tree = c.img.tree();
    auto members = tree.getMembers();
    auto me = members[index];
    const pid_t self = me.getVpid();
    if (c.migrated != nullptr) {
      // A child born away: its group and session were the host's, led by itself or
      // by the job (whose restart here leads its own session): only its own move.
      if (me.getSid() == self && setsid() < 0) fail(kj::str("cannot make process ", self, " a session leader: ", strerror(errno)));
      if (me.getSid() != self && me.getPgid() == self && setpgid(0, 0) < 0) {
        fail(kj::str("cannot make process ", self, " a process group leader: ", strerror(errno)));
      }
    } else if (me.getSid() == self) {
      // (One already, it stays: started by a host's mig-link, ChildSpec::ownSession.)
      if (getsid(0) != getpid() && setsid() < 0) {
        fail(kj::str("cannot make process ", self, " a session leader: ", strerror(errno)));
      }
    } else if (me.getPgid() == self || isMember(tree, me.getPgid())) {
      if (setpgid(0, me.getPgid() == self ? 0 : me.getPgid()) < 0 && getpgid(0) != me.getPgid()) {
        fail(kj::str("cannot put process ", self, " into process group ", me.getPgid(), ": ", strerror(errno)));
      }
    }
    if (c.migrated == nullptr && isMember(tree, me.getSid()) && getsid(0) != me.getSid()) {
      fail(kj::str("process ", self, " cannot join session ", me.getSid(), " (it was not its parent's)"));
    }
    if (index == 0) {
      // The tree's System V objects, made by its root (their last user, as the next
      // checkpoint looks for); "I" tells the restart process to remove them if the
      // restart is called off.
      resources::restoreSysvIpc(c.img);
      if (resources::ipcSection(c.img) != 0 && write(c.member.readyFd, "I", 1) != 1) fail(kj::str("the restart was called off"));
    }
    for (uint32_t i = 0; i < members.size(); ++i) {
      auto child = members[i];
      if (i == index || child.getVppid() != self) continue;
      pid_t pid = forkMember(c, child);
      if (pid == 0) {
        if (child.getZombie()) becomeZombie(child.getWaitStatus());
        runMember(c, i);
      }
      // The group now, from this side too, so a sibling that joins it never races
      // its leader (what shells do); a child that leads a session sets its own.
      if (child.getSid() != child.getVpid() && child.getPgid() == child.getVpid()) setpgid(pid, pid);
    }
    c.member.sharedRegions = c.shared.regionsOf(self);
    c.img.keepOnlyMember(self);
    MigratedOptions none;
    becomeRestored(c.img, c.path, c.options, c.caller, c.migrated != nullptr ? *c.migrated : none, &c.member);
  } catch (const kj::Exception& e) {
    memberFailed(c, e.getDescription());
  }
}

// The pipes, FIFOs and socketpairs between members, made once before the first fork
// (every member inherits them), above every fd number the members will use; `held`
// keeps them open until the members have their ends.
resources::TreePipes makeTreePipes(image::FileReader& img, const resources::CallerFds& caller,
                                   kj::Vector<kj::AutoCloseFd>& held) {
  auto tree = img.tree();
  int maxFd = 2;
  for (size_t i = 0; i < img.sectionCount(); ++i) {
    if (img.section(i).type != static_cast<uint16_t>(image::SectionType::files)) continue;
    for (auto f : img.meta<image::schema::Files>(i).getFds()) maxFd = std::max(maxFd, f.getFd());
  }
  const int base = maxFd + 16;  // and above the few a member's restart keeps
  resources::TreePipes pipes;
  for (auto p : tree.getPipes()) {
    int fds[2];
    if (p.getFifo().size() > 0) {
      // A FIFO: opened again by its path (so it stays the file others may open).
      // O_RDWR holds it open while both ends open without waiting for each other.
      const char* fifo = p.getFifo().cStr();
      struct stat st {};
      const bool missing = stat(fifo, &st) != 0;
      if (missing || !S_ISFIFO(st.st_mode)) {
        fail(kj::str("cannot restart the tree: its FIFO ", fifo, " is ", missing ? "missing" : "no FIFO now",
                     "; make it again (mkfifo) and try again"));
      }
      kj::AutoCloseFd hold(open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC));
      fds[0] = hold == nullptr ? -1 : open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
      fds[1] = fds[0] < 0 ? -1 : open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (fds[1] < 0) {
        if (fds[0] >= 0) close(fds[0]);
        fail(kj::str("cannot open the tree's FIFO ", fifo, ": ", strerror(errno)));
      }
      fcntl(fds[0], F_SETFL, 0);
      fcntl(fds[1], F_SETFL, 0);
    } else if (pipe2(fds, O_CLOEXEC) != 0) {
      fail(kj::str("cannot create a pipe: ", strerror(errno)));
    }
    kj::AutoCloseFd r(fds[0]), w(fds[1]);
    if (p.getCapacity() > 0) (void)fcntl(w, F_SETPIPE_SZ, static_cast<int>(p.getCapacity()));
    auto data = p.getContents();
    if (data.size() > 0 && write(w, data.begin(), data.size()) != static_cast<ssize_t>(data.size())) {
      fail(kj::str("cannot refill a pipe of the tree with its ", data.size(), " bytes"));
    }
    kj::AutoCloseFd rHigh(fcntl(r, F_DUPFD_CLOEXEC, base)), wHigh(fcntl(w, F_DUPFD_CLOEXEC, base));
    if (rHigh == nullptr || wHigh == nullptr) fail(kj::str("cannot move a pipe out of the way: ", strerror(errno)));
    pipes[p.getId()] = {rHigh.get(), wHigh.get()};
    held.add(kj::mv(rHigh));
    held.add(kj::mv(wHigh));
  }
  // Socketpairs with their ends in two members: made once, each end handed to its member.
  {
    struct End {
      image::schema::FileDescriptor::Reader record;  // the first member's (every holder saved the same)
      std::set<int32_t> members;                     // every member holding this end
    };
    std::map<uint64_t, End> ends;  // by inode
    int32_t member = 0;
    for (size_t i = 0; i < img.sectionCount(); ++i) {
      const uint16_t type = img.section(i).type;
      if (type == static_cast<uint16_t>(image::SectionType::member)) member = img.meta<image::schema::Member>(i).getVpid();
      if (type != static_cast<uint16_t>(image::SectionType::files)) continue;
      for (auto f : img.meta<image::schema::Files>(i).getFds()) {
        if (f.getKind() != image::schema::FileDescriptor::Kind::UNIX_SOCKET || f.getDupOf() >= 0 ||
            f.getSocket().getState() != image::schema::FileDescriptor::SocketState::CONNECTED) {
          continue;
        }
        ends.emplace(f.getSocket().getInode(), End{f, {}}).first->second.members.insert(member);
      }
    }
    for (auto& [inode, a] : ends) {
      // A pair held by one member alone is that member's own (unix_socket.cc makes it).
      auto peer = ends.find(a.record.getSocket().getPeerInode());
      if (peer == ends.end() || inode > peer->first) continue;
      std::set<int32_t> holders = a.members;
      holders.insert(peer->second.members.begin(), peer->second.members.end());
      if (holders.size() < 2) continue;
      kj::AutoCloseFd aEnd, bEnd;
      resources::makeTreeSocketpair(a.record, peer->second.record, caller, aEnd, bEnd);
      kj::AutoCloseFd aHigh(fcntl(aEnd, F_DUPFD_CLOEXEC, base)), bHigh(fcntl(bEnd, F_DUPFD_CLOEXEC, base));
      if (aHigh == nullptr || bHigh == nullptr) fail(kj::str("cannot move a socketpair out of the way: ", strerror(errno)));
      pipes[resources::kTreeSocket | inode] = {aHigh.get(), -1};
      pipes[resources::kTreeSocket | peer->first] = {bHigh.get(), -1};
      held.add(kj::mv(aHigh));
      held.add(kj::mv(bHigh));
    }
  }
  return pipes;
}

// Reads the members' "R"s until `live` said ready; "" then, else the first one's
// reason (one line). `madeIpc`: the root made the tree's System V objects ("I").
std::string awaitReady(int readyR, uint32_t live, bool& madeIpc) {
  std::string said;
  uint32_t readyCount = 0;
  bool failed = false;
  while (readyCount < live && !failed) {
    char buf[512];
    ssize_t n = read(readyR, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return "a process of the tree ended before it was restored";
    for (ssize_t i = 0; i < n; ++i) {
      if (!said.empty() || buf[i] == 'E') {
        failed = true;
        said.push_back(buf[i]);
      } else if (buf[i] == 'R') {
        ++readyCount;
      } else if (buf[i] == 'I') {
        madeIpc = true;
      }
    }
  }
  if (!said.empty() && said[0] == 'E') said.erase(0, 1);
  size_t nl = said.find('\n');
  if (nl != std::string::npos) said.resize(nl);
  return said;
}

volatile sig_atomic_t g_root = 0;

void forwardSignal(int sig) {
  if (g_root > 0) kill(g_root, sig);
}

}  // namespace

void TreeMemberRestart::ready() const {
  if (write(readyFd, "R", 1) != 1) fail(kj::str("the restart was called off"));
  char byte;
  ssize_t n;
  while ((n = read(goFd, &byte, 1)) < 0 && errno == EINTR) {}
  if (goOnByte ? n != 1 || byte != 'G' : n != 0) fail(kj::str("the restart was called off"));
  close(readyFd);
  close(goFd);
}

void TreeMemberRestart::release() const {
  // Past the gate the job runs here whatever becomes of a child: one gone meanwhile
  // (no reader left) is said on the restore log, not a SIGPIPE that ends the job.
  std::string go(waiting, 'G');
  if (!go.empty() && send(goFd, go.data(), go.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(go.size())) {
    dprintf(resources::restartMessages(), "migctl restart: a child born away ended before it was released: %s\n", strerror(errno));
  }
  close(goFd);
}

namespace {
const TreeMemberRestart* g_homeJob = nullptr;  // back home: the job's part (restartBornAway)
}  // namespace

void endBornAwayAtHome() {
  if (g_homeJob == nullptr) return;
  // Killed while they still wait for the go (closed first, a child would say "called
  // off" in the hop's log, whose last line is what the user is told), then reaped: the
  // job's own children; a grandchild is not ours to reap (ECHILD at once).
  for (pid_t pid : g_homeJob->children) kill(pid, SIGKILL);
  close(g_homeJob->goFd);
  for (pid_t pid : g_homeJob->children) {
    while (waitpid(pid, nullptr, __WALL) < 0 && errno == EINTR) {}
  }
  g_homeJob = nullptr;
}

void checkBornAway(image::FileReader& img) {
  auto members = img.tree().getMembers();
  const auto root = members[0];
  if (resources::ipcSection(img) != 0) {
    fail(kj::str("cannot restore PID ", root.getVpid(), " here: it shares memory or System V objects with its children "
                 "born away from home, which cannot move with it yet (issue 12)"));
  }
  if (members.size() - 1 > restore::kMaxChildrenReleased) {
    fail(kj::str("cannot restore PID ", root.getVpid(), " here: it has ", members.size() - 1, " descendants born away "
                 "from home, more than ", restore::kMaxChildrenReleased, "; move it once fewer of them run"));
  }
  for (uint32_t i = 1; i < members.size(); ++i) {
    const pid_t pid = members[i].getRealPid();
    if (resources::processExists(pid)) {
      fail(kj::str("cannot restore PID ", root.getVpid(), " here: its child born away from home (", members[i].getCommand(),
                   ") had PID ", pid, ", which a process here has now; move it again"));
    }
  }
}

void restartBornAway(image::FileReader& img, const char* path, const resources::FileRestoreOptions& options,
                     const resources::CallerFds& caller, const MigratedOptions& migrated) {
  auto members = img.tree().getMembers();
  const auto root = members[0];
  checkBornAway(img);
  uint32_t live = 0;
  for (uint32_t i = 1; i < members.size(); ++i) live += !members[i].getZombie();
  kj::Vector<kj::AutoCloseFd> held;
  resources::TreePipes pipes = makeTreePipes(img, caller, held);
  resources::TreeSharedMemory shared(img);  // none (refused above): the members' empty views
  // The go is a socket: sent with MSG_NOSIGNAL, a child gone meanwhile costs the job
  // (or its restorer, whose signals are blocked) no SIGPIPE.
  int readyPipe[2], goPipe[2];
  if (pipe2(readyPipe, O_CLOEXEC) != 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, goPipe) != 0) {
    fail(kj::str("cannot create a pipe: ", strerror(errno)));
  }
  kj::AutoCloseFd readyR(readyPipe[0]), readyW(readyPipe[1]), goR(goPipe[0]), goW(goPipe[1]);
  // Each child restores with the job's options but its gate, which is the job's. Back
  // home, a homecoming of its own: nothing forwarded, the deputy's fds its home fds
  // (the deputy's answers and come-back are the job's).
  MigratedOptions child;
  if (migrated.homecoming) {
    child.homecoming = true;
  } else {
    child.migrated = true;
    child.relay = kj::str(KJ_ASSERT_NONNULL(migrated.relay));
    child.jobId = migrated.jobId;
    child.token = kj::heapArray<kj::byte>(migrated.token);
    for (auto& p : migrated.localPaths) child.localPaths.add(kj::str(p));
    child.realtimeOffsetNs = migrated.realtimeOffsetNs;
    child.network = migrated.network;
  }
  fflush(stdout);
  fflush(stderr);
  kj::Vector<pid_t> made;
  for (uint32_t i = 1; i < members.size(); ++i) {
    auto m = members[i];
    if (m.getVppid() != root.getVpid()) continue;
    Ctx c{img, path, options, caller, TreeMemberRestart{pipes, readyW.get(), goR.get(), nullptr, true, 0}, shared, &child};
    pid_t pid = forkMember(c, m);
    if (pid == 0) {
      if (migrated.gateFd >= 0) close(migrated.gateFd);  // the job's alone
      close(readyR.release());
      close(goW.release());
      if (m.getZombie()) becomeZombie(m.getWaitStatus());
      runMember(c, i);
    }
    made.add(pid);
  }
  readyW = nullptr;
  goR = nullptr;
  bool madeIpc = false;
  std::string said = awaitReady(readyR, live, madeIpc);
  if (!said.empty()) {
    // Nothing has run yet: every child waits for its 'G'.
    for (uint32_t i = 1; i < members.size(); ++i) kill(members[i].getRealPid(), SIGKILL);
    for (pid_t pid : made) {
      while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {}
    }
    fail(kj::str("cannot restore PID ", root.getVpid(), "'s children born away from home: ", said.c_str()));
  }
  readyR = nullptr;
  img.keepOnlyMember(root.getVpid());
  // Left to the exec (or to a come-back, which needs it after this frame is gone).
  kj::Vector<pid_t> family;  // every descendant born away, each waiting for its go
  for (uint32_t i = 1; i < members.size(); ++i) family.add(members[i].getRealPid());
  auto* job = new TreeMemberRestart{kj::mv(pipes), -1, goW.release(), nullptr, true, live, family.releaseAsArray()};
  if (migrated.homecoming) g_homeJob = job;
  becomeRestored(img, path, options, caller, migrated, job);
}

int restartTree(image::FileReader& img, const char* path, const resources::FileRestoreOptions& options,
                const resources::CallerFds& caller) {
  auto tree = img.tree();
  auto members = tree.getMembers();
  uint32_t live = 0;
  for (auto m : members) live += !m.getZombie();
  // Every PID free before anything is made (forkAs says it again if one is taken meanwhile).
  for (auto m : members) {
    if (resources::processExists(m.getVpid())) {
      fail(kj::str("cannot restart the tree: PID ", m.getVpid(), " (", m.getCommand(), ") is taken by another process now; "
                   "end it (or the tree still running from this image) and try again"));
    }
  }
  kj::Vector<kj::AutoCloseFd> held;
  resources::TreePipes pipes = makeTreePipes(img, caller, held);
  // The memory members share, made and filled once; held until the tree ends.
  resources::TreeSharedMemory shared(img);
  int readyPipe[2], goPipe[2];
  if (pipe2(readyPipe, O_CLOEXEC) != 0 || pipe2(goPipe, O_CLOEXEC) != 0) fail(kj::str("cannot create a pipe: ", strerror(errno)));
  kj::AutoCloseFd readyR(readyPipe[0]), readyW(readyPipe[1]), goR(goPipe[0]), goW(goPipe[1]);

  auto root = members[0];
  fflush(stdout);
  fflush(stderr);
  pid_t rootPid = forkAs(root.getVpid(), root.getCommand().cStr());
  if (rootPid == 0) {
    close(readyR.release());
    close(goW.release());  // only the restart process holds it: its close is "go"
    Ctx c{img, path, options, caller, TreeMemberRestart{kj::mv(pipes), readyW.get(), goR.get(), nullptr}, shared};
    runMember(c, 0);
  }
  g_root = rootPid;
  readyW = nullptr;
  goR = nullptr;
  held.clear();
  // Signals sent to this process by PID are the job's (the shell's kill %1). Those
  // of the terminal reach the root itself, in this process's group.
  for (int sig : {SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGCONT}) signal(sig, forwardSignal);
  signal(SIGINT, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);

  // Every live member says it is ready, or why it is not.
  bool madeIpc = false;
  std::string said = awaitReady(readyR, live, madeIpc);
  const bool failed = !said.empty();
  if (failed) {
    // Nothing has run yet: every member waits for "go". Take them all down.
    for (auto m : members) kill(m.getVpid(), SIGKILL);
    int st;
    while (waitpid(rootPid, &st, 0) < 0 && errno == EINTR) {}
    if (madeIpc) resources::removeSysvIpc(img);
    fail(kj::str("the tree was not restarted: ", said.c_str()));
  }
  goW = nullptr;  // go
  readyR = nullptr;
  int status = 0;
  while (waitpid(rootPid, &status, 0) < 0) {
    if (errno != EINTR) fail(kj::str("cannot wait for the restarted tree's root ", rootPid, ": ", strerror(errno)));
  }
  g_root = 0;
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

}  // namespace mig::migctl
