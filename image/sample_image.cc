// See sample_image.h.
#include "image/sample_image.h"

#include "image/host_facts.h"
#include "image/image.capnp.h"
#include "image/section_check.h"
#include "image/writer.h"

#include <capnp/message.h>
#include <sys/mman.h>

namespace mig::image {

kj::Array<kj::byte> makeSampleImage(const SampleOptions& o) {
  MemorySink sink;
  capnp::MallocMessageBuilder header;
  fillHeader(header.initRoot<schema::Header>(), 42, 1234, "sample");
  ImageWriter w(sink, header);

  const uint64_t base = 0x10000000;
  const uint64_t stride = 0x100000;
  capnp::MallocMessageBuilder map;
  auto regions = map.initRoot<schema::MemoryMap>().initRegions(o.pageRuns + (o.fileRegion ? 1 : 0));
  for (uint32_t i = 0; i < o.pageRuns; ++i) {
    auto r = regions[i];
    r.setStart(base + i * stride);
    r.setEnd(base + i * stride + 16 * kPageSize);
    r.setProt(PROT_READ | PROT_WRITE);
    r.setFlags(i == 1 ? MAP_SHARED : MAP_PRIVATE);
    r.setKind(schema::MemoryRegion::Kind::ANONYMOUS);
  }
  if (o.fileRegion) {
    auto r = regions[o.pageRuns];
    r.setStart(base + o.pageRuns * stride);
    r.setEnd(base + o.pageRuns * stride + kPageSize);
    r.setProt(PROT_READ | PROT_EXEC);
    r.setFlags(MAP_PRIVATE);
    r.setKind(schema::MemoryRegion::Kind::FILE);
    r.setPath("/usr/bin/true");
  }
  w.section(SectionType::memoryMap, map);

  capnp::MallocMessageBuilder pagesMeta;
  auto runs = pagesMeta.initRoot<schema::Pages>().initRuns(o.pageRuns);
  uint64_t total = 0;
  for (uint32_t i = 0; i < o.pageRuns; ++i) {
    runs[i].setAddr(base + i * stride + kPageSize);
    runs[i].setPages(i + 1);
    total += (i + 1) * kPageSize;
  }
  w.beginData(SectionType::pages, pagesMeta, total);
  kj::byte page[kPageSize];
  for (uint32_t i = 0; i < o.pageRuns; ++i) {
    for (uint32_t p = 0; p <= i; ++p) {
      uint64_t addr = base + i * stride + (p + 1) * kPageSize;
      for (uint64_t b = 0; b < kPageSize; ++b) page[b] = samplePageByte(addr, b);
      w.data(page, sizeof(page));
    }
  }
  w.endData();

  if (o.threads > 0) {
    capnp::MallocMessageBuilder threadsMeta;
    auto threads = threadsMeta.initRoot<schema::Threads>().initThreads(o.threads);
    for (uint32_t i = 0; i < o.threads; ++i) {
      threads[i].setVtid(static_cast<int32_t>(1234 + i));
      auto frame = threads[i].initSigframe(64 + i);
      for (size_t b = 0; b < frame.size(); ++b) frame[b] = static_cast<kj::byte>(b + i);
      threads[i].setSigframeAddr(0x7ff000000000 + i * 0x10000);
      threads[i].setFsBase(0x7f0000000000 + i * 0x1000);
    }
    // The last thread has SIGUSR1 pending (mask only) and realtime signal 34 queued
    // with its siginfo (si_value 11).
    auto last = threads[o.threads - 1];
    auto sigs = last.initPendingSignals(2);
    sigs.set(0, 10);
    sigs.set(1, 34);
    kj::byte info[128] = {};
    int32_t signo = 34, value = 11;
    memcpy(info, &signo, sizeof(signo));
    memcpy(info + 24, &value, sizeof(value));  // si_value
    last.initPendingSiginfo(1).set(0, kj::arrayPtr(info, sizeof(info)));
    w.section(SectionType::threads, threadsMeta);
  }
  w.finish();
  return sink.release();
}

void writeOneRun(ImageWriter& w, SectionType type, uint64_t addr, uint32_t pages, const void* bytes, size_t len) {
  capnp::MallocMessageBuilder meta;
  auto runs = meta.initRoot<schema::Pages>().initRuns(1);
  runs[0].setAddr(addr);
  runs[0].setPages(pages);
  w.beginData(type, meta, len);
  w.data(bytes, len);
  w.endData();
}

}  // namespace mig::image
