// See threads.h.
#include "resources/threads.h"

#include "resources/pending_siginfo.h"
#include "resources/proc_file.h"

#include <capnp/message.h>

#include <algorithm>
#include <cstdio>
#include <vector>

namespace mig::resources {

void writeThreads(pid_t pid, const control::Block& block, image::ImageWriter& w, CaptureStats& stats) {
  uint32_t n = std::min(block.threadCount, control::kMaxThreads);
  capnp::MallocMessageBuilder msg;
  auto threads = msg.initRoot<image::schema::Threads>().initThreads(n);
  // The thread whose TID is the process's is the main thread: it goes first.
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < n; ++i) {
    if (block.threads[i].realTid == pid) order.insert(order.begin(), i);
    else order.push_back(i);
  }
  PendingSiginfoReader siginfo(pid, block.vpid);
  for (uint32_t k = 0; k < n; ++k) {
    const control::ThreadSlot& s = block.threads[order[k]];
    auto t = threads[k];
    t.setVtid(s.vtid);
    t.setRealTid(s.realTid);
    t.setSigframeAddr(s.ucontextAddr);
    t.setFsBase(s.kernel.fsBase);
    t.setGsBase(s.kernel.gsBase);
    t.setTidAddress(s.kernel.tidAddress);
    t.setRobustList(s.kernel.robustList);
    t.setRobustListLen(s.kernel.robustListLen);
    t.setRseqAddr(s.kernel.rseqAddr);
    t.setRseqLen(s.kernel.rseqLen);
    t.setRseqSig(s.kernel.rseqSig);
    t.setAltStackSp(s.kernel.altStackSp);
    t.setAltStackSize(s.kernel.altStackSize);
    t.setAltStackFlags(s.kernel.altStackFlags);
    char what[64];
    snprintf(what, sizeof(what), "task/%d/status", s.realTid);
    uint64_t pending = pendingMask(readProcFile(pid, what), "SigPnd");
    snprintf(what, sizeof(what), "task/%d/comm", s.realTid);
    std::string name = readProcFile(pid, what);
    while (!name.empty() && name.back() == '\n') name.pop_back();
    t.setName(name);
    stats.pendingSignals |= pending;
    addSignals(pending, t.initPendingSignals(static_cast<uint32_t>(__builtin_popcountll(pending))));
    if (pending != 0) addSiginfo(siginfo, s.realTid, false, [&](uint32_t n) { return t.initPendingSiginfo(n); });
  }
  w.section(image::SectionType::threads, msg);
  stats.threads = n;
}

}  // namespace mig::resources
