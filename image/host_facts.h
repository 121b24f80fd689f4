// Facts about this host that an image records (CPU register-state features,
// kernel, hostname) and the check that a host can restore an image's registers.
#pragma once

#include "image/image.capnp.h"

#include <kj/string.h>
#include <kj/vector.h>

#include <cstdint>

namespace mig::image {

struct CpuFacts {
  char vendor[13];
  uint64_t xcr0;       // XSAVE state components the OS enabled; 0 without OSXSAVE
  uint32_t xsaveSize;  // XSAVE area size for xcr0
  bool avx;
  bool avx2;
  bool avx512f;
};

// What an image records of this CPU, asked of it once per process (each cpuid
// instruction traps to the hypervisor on a VM: tens of microseconds).
const CpuFacts& hostCpu();

// This CPU's XCR0, all that cpuMismatch needs: from glibc's record of CPUID made at
// the program's start and one xgetbv, no cpuid of our own (a restart's check).
uint64_t hostXcr0();

void fillCpu(schema::CpuFeatures::Builder out, const CpuFacts& cpu);

// Fills the header of an image made on this host now.
void fillHeader(schema::Header::Builder out, uint64_t jobId, int32_t vpid, kj::StringPtr command);

// Records the owner of process `pid` in an image's header: its real uid, gid and
// supplementary groups from /proc/PID/status (what the kernel says, not the process).
// Fails if they cannot be read: an image without its owner is not made.
void fillOwner(schema::Header::Builder out, int pid);

// Why a CPU whose XCR0 is `xcr0` cannot restore register state saved on
// `image`'s CPU, naming the missing features; nullptr when it can.
kj::Maybe<kj::String> cpuMismatch(schema::CpuFeatures::Reader image, uint64_t xcr0);

}  // namespace mig::image
