// See process_attrs.h.
#include "resources/process_attrs.h"

#include "image/image_error.h"
#include "resources/pending_siginfo.h"
#include "resources/posix_timers.h"
#include "resources/proc_file.h"

#include <capnp/message.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace mig::resources {

void writeProcess(pid_t pid, const control::Block& block, image::ImageWriter& w, CaptureStats& stats) {
  capnp::MallocMessageBuilder msg;
  auto p = msg.initRoot<image::schema::Process>();
  // /proc/PID/stat: fields after the command's closing parenthesis, numbered from 3.
  std::string stat = readProcFile(pid, "stat");
  std::vector<uint64_t> f(60, 0);
  size_t at = stat.rfind(')');
  if (at == std::string::npos) image::fail(kj::str("cannot parse /proc/", pid, "/stat"));
  const char* c = stat.c_str() + at + 2;
  for (int field = 3; field < 60 && *c; ++field) {
    f[field] = strtoull(c, nullptr, 10);
    const char* sp = strchr(c, ' ');
    if (sp == nullptr) break;
    c = sp + 1;
  }
  auto mm = p.initMm();
  mm.setStartCode(f[26]);
  mm.setEndCode(f[27]);
  mm.setStartStack(f[28]);
  mm.setStartData(f[45]);
  mm.setEndData(f[46]);
  mm.setStartBrk(f[47]);
  mm.setArgStart(f[48]);
  mm.setArgEnd(f[49]);
  mm.setEnvStart(f[50]);
  mm.setEnvEnd(f[51]);
  mm.setBrk(block.brk);
  std::string auxv = readProcFile(pid, "auxv");
  mm.setAuxv(kj::arrayPtr(reinterpret_cast<const kj::byte*>(auxv.data()), auxv.size()));

  auto actions = p.initSigactions(64);
  for (uint32_t i = 0; i < 64; ++i) {
    actions[i].setHandler(block.sigactions[i].handler);
    actions[i].setFlags(block.sigactions[i].flags);
    actions[i].setRestorer(block.sigactions[i].restorer);
    actions[i].setMask(block.sigactions[i].mask);
  }
  p.initItimerReal().setValueNs(block.itimerValueNs);
  p.getItimerReal().setIntervalNs(block.itimerIntervalNs);
  posix_timers::capture(pid, block, p);
  std::string status = readProcFile(pid, "status");
  p.setUmask(static_cast<uint32_t>(strtoul(fieldOr(status, "Umask").c_str(), nullptr, 8)));
  char cwdLink[64];
  snprintf(cwdLink, sizeof(cwdLink), "/proc/%d/cwd", pid);
  p.setCwd(readLink(cwdLink).c_str());
  auto limits = p.initRlimits(RLIMIT_NLIMITS);
  for (int r = 0; r < RLIMIT_NLIMITS; ++r) {
    struct rlimit lim {};
    prlimit(pid, static_cast<__rlimit_resource>(r), nullptr, &lim);
    limits[r].setResource(static_cast<uint32_t>(r));
    limits[r].setSoft(lim.rlim_cur);
    limits[r].setHard(lim.rlim_max);
  }
  p.setResumeInfoAddr(block.resumeInfoAddr);
  p.setResumeEntry(block.resumeEntry);
  p.setMonotonicNs(block.monotonicNs);
  uint64_t shared = pendingMask(status, "ShdPnd");
  stats.pendingSignals |= shared;
  addSignals(shared, p.initProcessPending(static_cast<uint32_t>(__builtin_popcountll(shared))));
  if (shared != 0) {
    PendingSiginfoReader siginfo(pid, block.vpid);
    addSiginfo(siginfo, pid, true, [&](uint32_t n) { return p.initProcessPendingSiginfo(n); });
  }
  w.section(image::SectionType::process, msg);
}

namespace {

void setLimit(image::schema::Rlimit::Reader l) {
  struct rlimit lim = {l.getSoft(), l.getHard()};
  if (setrlimit(static_cast<__rlimit_resource>(l.getResource()), &lim) != 0) {
    struct rlimit now {};
    getrlimit(static_cast<__rlimit_resource>(l.getResource()), &now);
    lim.rlim_max = now.rlim_max;  // raising a hard limit needs privilege: keep ours
    lim.rlim_cur = std::min(lim.rlim_cur, now.rlim_max);
    setrlimit(static_cast<__rlimit_resource>(l.getResource()), &lim);
  }
}

}  // namespace

void applyProcessState(image::FileReader& img, bool migrated) {
  for (size_t i = 0; i < img.sectionCount(); ++i) {
    if (img.section(i).type != static_cast<uint16_t>(image::SectionType::process)) continue;
    auto p = img.meta<image::schema::Process>(i);
    // A migrated job's working directory is at home (its relative paths go there).
    if (chdir(p.getCwd().cStr()) != 0 && !(migrated && chdir("/") == 0)) {
      image::fail(kj::str("the process's working directory ", p.getCwd(), " is not available here: ", strerror(errno)));
    }
    umask(static_cast<mode_t>(p.getUmask()));
    for (auto l : p.getRlimits()) {
      if (l.getResource() != RLIMIT_NOFILE) setLimit(l);
    }
  }
}

void applyFdLimit(image::FileReader& img) {
  for (size_t i = 0; i < img.sectionCount(); ++i) {
    if (img.section(i).type != static_cast<uint16_t>(image::SectionType::process)) continue;
    for (auto l : img.meta<image::schema::Process>(i).getRlimits()) {
      if (l.getResource() == RLIMIT_NOFILE) setLimit(l);
    }
  }
}

}  // namespace mig::resources
