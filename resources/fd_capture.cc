// See fd_capture.h.
#include "resources/fd_capture.h"

#include "image/image_error.h"
#include "resources/fd_kinds.h"
#include "resources/file_locks.h"
#include "resources/proc_file.h"

#include <capnp/message.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <set>
#include <vector>

namespace mig::resources {
namespace {

constexpr const char kDeleted[] = " (deleted)";
constexpr size_t kDeletedLen = sizeof(kDeleted) - 1;

bool sameFile(pid_t pid, int a, int b) { return syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b) == 0; }

}  // namespace

// The shim's control sockets, its own or, in a child that has not closed them yet, its
// parent's: never the program's, whatever the shim's own list says.
std::set<uint64_t> migSocketInodes(pid_t pid) {
  std::set<uint64_t> inodes;
  // Columns: Num RefCount Protocol Flags Type St Inode [Path]
  std::string table = readProcFile(pid, "net/unix");
  forEachLine(table, [&](std::string_view line) {
    size_t path = line.find(" @mig/");
    if (path == std::string_view::npos) return;
    size_t inodeEnd = line.find_last_not_of(' ', path);
    size_t inodeStart = line.find_last_of(' ', inodeEnd);
    if (inodeEnd == std::string_view::npos || inodeStart == std::string_view::npos) return;
    inodes.insert(strtoull(std::string(line.substr(inodeStart + 1)).c_str(), nullptr, 10));
  });
  return inodes;
}

namespace {

// The process's fd numbers, sorted, without the shim's own (its control socket, log)
// and without any socket bound under @mig/ (`read`: migSocketInodes(pid), or null).
std::vector<int> processFds(pid_t pid, const control::Block& block, const std::set<uint64_t>* read) {
  std::set<uint64_t> own;
  const std::set<uint64_t>& migSockets = read != nullptr ? *read : (own = migSocketInodes(pid));
  std::string dirPath = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dirPath.c_str());
  if (d == nullptr) image::fail(kj::str("cannot list ", dirPath.c_str(), ": ", strerror(errno)));
  KJ_DEFER(closedir(d));
  std::vector<int> numbers;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    int fd = atoi(e->d_name);
    bool shim = false;
    for (uint32_t i = 0; i < block.shimFdCount && i < control::kMaxShimFds; ++i) shim = shim || block.shimFds[i] == fd;
    if (!shim && !migSockets.empty()) {
      std::string target = readLink("/proc/" + std::to_string(pid) + "/fd/" + e->d_name);
      shim = target.rfind("socket:[", 0) == 0 && migSockets.count(strtoull(target.c_str() + 8, nullptr, 10)) != 0;
    }
    if (!shim) numbers.push_back(fd);
  }
  std::sort(numbers.begin(), numbers.end());
  return numbers;
}

FdProbe probe(pid_t pid, int fd) {
  FdProbe p{};
  p.fd = fd;
  std::string link = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  p.target = readLink(link);
  p.path = p.target;
  p.deleted = p.path.size() > kDeletedLen && p.path.compare(p.path.size() - kDeletedLen, kDeletedLen, kDeleted) == 0;
  if (p.deleted) p.path.resize(p.path.size() - kDeletedLen);
  std::string fdinfo = readProcFile(pid, "fdinfo/" + std::to_string(fd));
  p.pos = strtoll(fieldOr(fdinfo, "pos").c_str(), nullptr, 10);
  p.flags = static_cast<uint32_t>(strtoul(fieldOr(fdinfo, "flags").c_str(), nullptr, 8));
  if (stat(link.c_str(), &p.st) != 0) memset(&p.st, 0, sizeof(p.st));
  return p;
}

}  // namespace

std::vector<FdProbe> probeFiles(pid_t pid, const control::Block& block, const std::set<uint64_t>* migSockets) {
  std::vector<FdProbe> probes;
  for (int fd : processFds(pid, block, migSockets)) probes.push_back(probe(pid, fd));
  return probes;
}

std::string CaptureContext::linkOf(int fd) const {
  return "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
}

void writeFiles(pid_t pid, const control::Block& block, image::ImageWriter& w, CaptureStats& stats,
                const CaptureOptions& options, const std::set<uint64_t>* treePipes,
                const std::vector<FdProbe>* probed) {
  std::vector<FdProbe> own;
  const std::vector<FdProbe>& probes = probed != nullptr ? *probed : (own = probeFiles(pid, block));
  CaptureContext ctx{pid, nullptr, options};
  ctx.treePipes = treePipes;
  // The socket kinds read the process's sockets through copies of them (socket_state.h).
  kj::AutoCloseFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  ctx.pidfd = pidfd == nullptr ? -1 : pidfd.get();
  ctx.warnings = &stats.warnings;
  ctx.connections = &stats.connections;
  ctx.all = kj::arrayPtr(probes.data(), probes.size());

  capnp::MallocMessageBuilder msg;
  auto files = msg.initRoot<image::schema::Files>();
  auto list = files.initFds(static_cast<uint32_t>(probes.size()));
  kj::Vector<kj::String> atHome;  // a checkpoint of a job away from home: its home fds
  for (size_t i = 0; i < probes.size(); ++i) {
    const FdProbe& f = probes[i];
    auto out = list[i];
    out.setFd(f.fd);
    out.setFlags(f.flags & ~static_cast<uint32_t>(O_CLOEXEC));
    out.setCloexec((f.flags & O_CLOEXEC) != 0);
    out.setOffset(f.pos);
    for (size_t j = 0; j < i; ++j) {
      if (sameFile(pid, probes[j].fd, f.fd)) {
        out.setDupOf(probes[j].fd);
        break;
      }
    }
    if (!options.forMigration && control::isHomeFd(block, f.fd)) {
      // What is here is mig's stand-in (/dev/null, or a socket to the relay): the job's
      // own fd is at home, where the image cannot take it from. Saved as an fd the image
      // does not hold (a restart gives its caller's fd at that number, else /dev/null);
      // a hop's capture keeps the stand-ins, which the next host makes home fds again.
      out.setPath("(held at home)");
      out.setKind(FdRecord::Kind::INHERITED);
      atHome.add(kj::str(f.fd));
      continue;
    }
    out.setPath(f.path.c_str());
    const FdKind& kind = detectKind(f, ctx);
    out.setKind(kind.kind);  // a dup carries the kind too: it decides where the fd lives on migration
    if (out.getDupOf() < 0 && kind.capture != nullptr) kind.capture(f, ctx, out);
  }
  if (atHome.size() > 0) {
    const bool one = atHome.size() == 1;
    stats.warnings.add(kj::str(one ? "fd " : "fds ", kj::strArray(atHome, ", "), one ? " is" : " are",
                               " held at the job's home host (it runs away from home; its calls on them go there): "
                               "the image does not hold them, and a restart gives the fd migctl restart has at each "
                               "number, else /dev/null"));
  }
  file_locks::capture(pid, files, stats.warnings);
  w.section(image::SectionType::files, msg);
  stats.fds = static_cast<uint32_t>(probes.size());
}

}  // namespace mig::resources
