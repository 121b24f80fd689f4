// See process_tree.h.
#include "resources/process_tree.h"

#include "image/image_error.h"
#include "resources/proc_file.h"

#include <cerrno>
#include <cstdlib>
#include <dirent.h>
#include <csignal>
#include <fcntl.h>
#include <unistd.h>
#include <kj/memory.h>
#include <map>
#include <sys/stat.h>

namespace mig::resources {

bool processExists(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

bool parseStat(const std::string& stat, TreeProcess& out) {
  // "PID (COMM) STATE PPID PGRP SESSION ... EXIT_CODE": comm may hold spaces and
  // parentheses, so the fields after it are found from the last ')'.
  size_t open = stat.find('('), close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open || close + 2 >= stat.size()) return false;
  out.pid = static_cast<pid_t>(strtol(stat.c_str(), nullptr, 10));
  out.command = stat.substr(open + 1, close - open - 1);
  kj::Vector<std::string> f;  // f[0] is field 3 (state)
  size_t at = close + 2;
  while (at < stat.size()) {
    size_t sp = stat.find(' ', at);
    if (sp == std::string::npos) sp = stat.size();
    f.add(stat.substr(at, sp - at));
    at = sp + 1;
  }
  if (f.size() < 4 || f[0].empty()) return false;
  out.zombie = f[0][0] == 'Z';
  out.ppid = static_cast<pid_t>(atol(f[1].c_str()));
  out.pgid = static_cast<pid_t>(atol(f[2].c_str()));
  out.sid = static_cast<pid_t>(atol(f[3].c_str()));
  // Field 52, exit_code (Linux 3.5): f[49].
  out.waitStatus = f.size() > 49 ? atoi(f[49].c_str()) : 0;
  while (!out.command.empty() && (out.command.back() == '\n')) out.command.pop_back();
  return true;
}

kj::Vector<TreeProcess> listTree(pid_t root) {
  std::multimap<pid_t, TreeProcess> byParent;
  TreeProcess rootProc{};
  bool haveRoot = false;
  DIR* d = opendir("/proc");
  if (d == nullptr) image::fail(kj::str("cannot list /proc"));
  KJ_DEFER(closedir(d));
  while (struct dirent* e = readdir(d)) {
    char* end = nullptr;
    long pid = strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::string stat;
    // A process may end while /proc is read: it is then simply not in the tree.
    if (!readProcFileIfExists(static_cast<pid_t>(pid), "stat", stat)) continue;
    TreeProcess p{};
    if (!parseStat(stat, p)) continue;
    // The checkpointer itself (migctl started by the job's own mig_checkpoint, mig.h)
    // is never a member: it is the one taking the image.
    if (p.pid == getpid() && p.pid != root) continue;
    if (p.pid == root) {
      rootProc = p;
      haveRoot = true;
    } else {
      byParent.emplace(p.ppid, p);
    }
  }
  if (!haveRoot) image::fail(kj::str("no process with PID ", root));
  kj::Vector<TreeProcess> tree;
  tree.add(rootProc);
  for (size_t i = 0; i < tree.size(); ++i) {  // breadth first: parents before children
    if (tree[i].zombie) continue;
    auto range = byParent.equal_range(tree[i].pid);
    for (auto it = range.first; it != range.second; ++it) tree.add(it->second);
  }
  return tree;
}

namespace {

// Calls `each` with every PID in the children lists of `pid`'s threads; false when a
// list cannot be read.
template <typename Each>
bool forEachChild(pid_t pid, Each&& each) {
  auto taskDir = kj::str("/proc/", pid, "/task");
  DIR* d = opendir(taskDir.cStr());
  if (d == nullptr) return false;
  KJ_DEFER(closedir(d));
  bool anyThread = false;
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    anyThread = true;
    int fd = open(kj::str(taskDir, "/", e->d_name, "/children").cStr(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    KJ_DEFER(close(fd));
    std::string text;
    char buf[512];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return false;
      if (n == 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    const char* p = text.c_str();
    for (;;) {
      char* end = nullptr;
      long child = strtol(p, &end, 10);
      if (end == p) break;
      if (child > 0) each(static_cast<pid_t>(child));
      p = end;
    }
  }
  return anyThread;
}

}  // namespace

kj::Maybe<kj::Vector<TreeProcess>> listFrozenTree(pid_t root) {
  auto read = [](pid_t pid, TreeProcess& out) {
    std::string stat;
    return readProcFileIfExists(pid, "stat", stat) && parseStat(stat, out);
  };
  kj::Vector<TreeProcess> tree;
  TreeProcess rootProc{};
  if (!read(root, rootProc)) image::fail(kj::str("no process with PID ", root));
  tree.add(rootProc);
  for (size_t i = 0; i < tree.size(); ++i) {  // breadth first: parents before children
    if (tree[i].zombie) continue;
    bool whole = true;
    const bool listed = forEachChild(tree[i].pid, [&](pid_t child) {
      TreeProcess p{};
      // Listed as a child but gone: its parent reaped it, so not everything is frozen.
      if (!read(child, p)) whole = false;
      else if (p.pid != getpid()) tree.add(p);  // never the caller, as listTree
    });
    if (!listed || !whole) return nullptr;
  }
  return kj::mv(tree);
}

bool surelyChildless(pid_t pid) {
  bool none = true;
  return forEachChild(pid, [&](pid_t) { none = false; }) && none;
}

kj::Vector<TreeProcess> jobDescendants(pid_t root, const char* helperExe, bool frozen) {
  struct stat helper {};
  const bool haveHelper = helperExe != nullptr && stat(helperExe, &helper) == 0;
  auto runsHelper = [&](pid_t pid) {
    struct stat theirs {};
    return haveHelper && stat((std::string("/proc/") + std::to_string(pid) + "/exe").c_str(), &theirs) == 0 &&
           theirs.st_dev == helper.st_dev && theirs.st_ino == helper.st_ino;
  };
  kj::Maybe<kj::Vector<TreeProcess>> quick;
  if (frozen) quick = listFrozenTree(root);
  kj::Vector<TreeProcess> tree;  // parents before their children
  KJ_IF_MAYBE(t, quick) {
    tree = kj::mv(*t);
  } else {
    tree = listTree(root);
  }
  kj::Vector<pid_t> helpers;
  kj::Vector<TreeProcess> out;
  for (size_t i = 1; i < tree.size(); ++i) {
    const auto& p = tree[i];
    bool isHelper = p.ppid == root && !p.zombie && (p.command == "migctl" || runsHelper(p.pid));
    for (pid_t h : helpers) isHelper |= p.ppid == h;  // and whatever it started
    if (isHelper) helpers.add(p.pid);
    else out.add(p);
  }
  return out;
}

}  // namespace mig::resources
