// A migrated job's CLOCK_MONOTONIC and CLOCK_BOOTTIME go on from where they were at
// the freeze, whatever this host's clocks say: `migctl restart --migrated` puts the
// restored process into a new time namespace (Linux >= 5.6, needs CAP_SYS_ADMIN)
// whose offsets make the job's clocks continue. Without the privilege the job sees
// this host's clocks (they may jump, also backwards): the one-line reason is returned.
#pragma once

#include <kj/common.h>
#include <kj/string.h>

#include <cstdint>

namespace mig::migctl {

// Call before exec'ing the restorer: the exec enters the new namespace. Returns
// nullptr on success, else why the clocks could not be kept.
kj::Maybe<kj::String> keepJobClocks(int64_t jobMonotonicNsAtFreeze);

}  // namespace mig::migctl
