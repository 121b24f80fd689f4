// Hand-built restore plans for the restorer's tests (hosted code).
#pragma once

#include "image/plan_check.h"
#include "image/restore_plan.h"

#include <cstring>
#include <string>
#include <vector>
#include <sys/mman.h>

namespace mig::restore::testing {

struct PlanFixture {
  std::vector<plan::Region> regions;
  std::vector<plan::Pages> pages;
  std::vector<plan::Thread> threads;
  std::vector<plan::SigAction> sigactions;
  std::vector<plan::Fd> fds;
  std::string strings;
  std::vector<unsigned char> blob;
  plan::Header header{};  // flags, mm, timers, resumeInfoAddr, processPending are copied

  PlanFixture() { str("/nonexistent/image"); }

  uint32_t str(const std::string& s) {
    uint32_t at = static_cast<uint32_t>(strings.size());
    strings += s;
    strings += '\0';
    return at;
  }

  plan::Region& region(uint64_t start, uint64_t end, uint32_t prot = PROT_READ | PROT_WRITE,
                       uint32_t kind = plan::kKindAnonymous) {
    plan::Region r{};
    r.start = start;
    r.end = end;
    r.prot = prot;
    r.mapFlags = MAP_PRIVATE;
    r.source = plan::kSourceZero;
    r.kind = kind;
    r.path = plan::kNoString;
    regions.push_back(r);
    return regions.back();
  }

  plan::Thread& thread(uint64_t sigframeAddr, bool main) {
    plan::Thread t{};
    t.vtid = 100 + static_cast<int32_t>(threads.size());
    t.flags = main ? plan::kThreadMain : 0;
    t.sigframeAddr = sigframeAddr;
    threads.push_back(t);
    return threads.back();
  }

  // The plan bytes (8-byte aligned storage).
  std::vector<uint64_t> build() const {
    plan::Header h = header;
    h.magic = plan::kMagic;
    h.version = plan::kVersion;
    h.headerSize = sizeof(plan::Header);
    h.imagePath = 0;
    h.regionCount = static_cast<uint32_t>(regions.size());
    h.pagesCount = static_cast<uint32_t>(pages.size());
    h.threadCount = static_cast<uint32_t>(threads.size());
    h.sigactionCount = static_cast<uint32_t>(sigactions.size());
    h.fdCount = static_cast<uint32_t>(fds.size());
    h.regions = sizeof(plan::Header);
    h.pages = h.regions + regions.size() * sizeof(plan::Region);
    h.threads = h.pages + pages.size() * sizeof(plan::Pages);
    h.sigactions = h.threads + threads.size() * sizeof(plan::Thread);
    h.fds = h.sigactions + sigactions.size() * sizeof(plan::SigAction);
    h.strings = h.fds + fds.size() * sizeof(plan::Fd);
    h.stringsSize = strings.size();
    h.blob = (h.strings + h.stringsSize + 7) & ~7ull;
    h.blobSize = blob.size();
    h.totalSize = (h.blob + h.blobSize + 7) & ~7ull;
    std::vector<uint64_t> out(h.totalSize / 8);
    auto* b = reinterpret_cast<char*>(out.data());
    auto put = [&](uint64_t at, const void* p, size_t n) {
      if (n > 0) memcpy(b + at, p, n);
    };
    put(0, &h, sizeof(h));
    put(h.regions, regions.data(), regions.size() * sizeof(plan::Region));
    put(h.pages, pages.data(), pages.size() * sizeof(plan::Pages));
    put(h.threads, threads.data(), threads.size() * sizeof(plan::Thread));
    put(h.sigactions, sigactions.data(), sigactions.size() * sizeof(plan::SigAction));
    put(h.fds, fds.data(), fds.size() * sizeof(plan::Fd));
    put(h.strings, strings.data(), strings.size());
    put(h.blob, blob.data(), blob.size());
    return out;
  }
};

inline const plan::Header* header(const std::vector<uint64_t>& bytes) {
  return reinterpret_cast<const plan::Header*>(bytes.data());
}

}  // namespace mig::restore::testing
