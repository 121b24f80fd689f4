// See host_facts.h.
#include "image/host_facts.h"

#include "image/format.h"
#include "image/image_error.h"

#include <cpuid.h>
// glibc's header spells its functions' type _Bool, which g++ takes in C++ and clang++
// (the fuzz build) does not.
#define _Bool bool
#include <sys/platform/x86.h>
#undef _Bool
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <sys/utsname.h>
#include <unistd.h>

namespace mig::image {

uint64_t hostXcr0() {
  if (!CPU_FEATURE_PRESENT(OSXSAVE)) return 0;  // xgetbv would fault
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

namespace {

CpuFacts askCpu() {
  CpuFacts c{};
  c.xcr0 = hostXcr0();
  unsigned maxLeaf = 0, a = 0, b = 0, cx = 0, d = 0;
  __cpuid(0, maxLeaf, b, cx, d);  // leaves 0 and 1 exist on every x86_64 CPU
  memcpy(c.vendor + 0, &b, 4);
  memcpy(c.vendor + 4, &d, 4);
  memcpy(c.vendor + 8, &cx, 4);
  __cpuid(1, a, b, cx, d);
  c.avx = (cx & bit_AVX) != 0 && (c.xcr0 & 0x6) == 0x6;
  if (maxLeaf >= 7) {
    __cpuid_count(7, 0, a, b, cx, d);
    c.avx2 = c.avx && (b & bit_AVX2) != 0;
    c.avx512f = (b & bit_AVX512F) != 0 && (c.xcr0 & 0xe0) == 0xe0;
  }
  if (maxLeaf >= 0xd && c.xcr0 != 0) {
    __cpuid_count(0xd, 0, a, b, cx, d);
    c.xsaveSize = b;
  }
  return c;
}

}  // namespace

const CpuFacts& hostCpu() {
  static const CpuFacts facts = askCpu();
  return facts;
}

void fillCpu(schema::CpuFeatures::Builder out, const CpuFacts& cpu) {
  out.setVendor(cpu.vendor);
  out.setXcr0(cpu.xcr0);
  out.setXsaveSize(cpu.xsaveSize);
  out.setAvx(cpu.avx);
  out.setAvx2(cpu.avx2);
  out.setAvx512f(cpu.avx512f);
}

void fillHeader(schema::Header::Builder out, uint64_t jobId, int32_t vpid, kj::StringPtr command) {
  out.setFormatVersion(kFormatVersion);
  out.setArch("x86_64");
  fillCpu(out.initCpu(), hostCpu());
  struct utsname u {};
  uname(&u);
  out.setKernelRelease(u.release);
  out.setHostname(u.nodename);
  out.setPageSize(static_cast<uint32_t>(sysconf(_SC_PAGESIZE)));
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  out.setCreatedNs(static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec);
  out.setJobId(jobId);
  out.setVpid(vpid);
  out.setCommand(command);
}

void fillOwner(schema::Header::Builder out, int pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  FILE* f = fopen(path, "re");
  if (f == nullptr) fail(kj::str("cannot read ", path, " for the owner of process ", pid));
  unsigned uid = 0, gid = 0;
  bool haveUid = false, haveGid = false;
  kj::Vector<uint32_t> groups;
  char line[4096];
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (sscanf(line, "Uid: %u", &uid) == 1) haveUid = true;         // real, effective, saved, fs: the real one
    else if (sscanf(line, "Gid: %u", &gid) == 1) haveGid = true;
    else if (strncmp(line, "Groups:", 7) == 0) {
      char* p = line + 7;
      for (;;) {
        char* end = nullptr;
        unsigned long g = strtoul(p, &end, 10);
        if (end == p) break;
        groups.add(static_cast<uint32_t>(g));
        p = end;
      }
    }
  }
  fclose(f);
  if (!haveUid || !haveGid) fail(kj::str("no Uid/Gid line in ", path));
  out.setOwnerKnown(true);
  out.setOwnerUid(uid);
  out.setOwnerGid(gid);
  auto list = out.initOwnerGroups(static_cast<unsigned>(groups.size()));
  for (size_t i = 0; i < groups.size(); ++i) list.set(static_cast<unsigned>(i), groups[i]);
}

namespace {

// XSAVE state components by XCR0 bit (Intel SDM vol. 1, 13.1).
struct Component {
  int bit;
  const char* name;
};
constexpr Component kComponents[] = {
    {0, "x87"},          {1, "SSE"},           {2, "AVX"},
    {3, "MPX bounds"},   {4, "MPX config"},    {5, "AVX-512 opmask"},
    {6, "AVX-512 ZMM_Hi256"}, {7, "AVX-512 Hi16_ZMM"}, {9, "PKRU"},
    {17, "AMX TILECFG"}, {18, "AMX TILEDATA"},
};

}  // namespace

kj::Maybe<kj::String> cpuMismatch(schema::CpuFeatures::Reader image, uint64_t xcr0) {
  uint64_t missing = image.getXcr0() & ~xcr0;
  if (missing == 0) return nullptr;
  kj::Vector<kj::String> names;
  for (const auto& c : kComponents) {
    if (missing & (1ull << c.bit)) names.add(kj::str(c.name));
  }
  if (names.size() == 0) names.add(kj::str("XSAVE components 0x", kj::hex(missing)));
  return kj::str("image needs CPU register state this CPU lacks: ", kj::strArray(names, ", "),
                 " (image XCR0 0x", kj::hex(image.getXcr0()), ", this CPU 0x", kj::hex(xcr0),
                 "); restart it on a host whose CPU has these features");
}

}  // namespace mig::image
