// Raw system calls that do not touch errno, for code that runs in signal handlers
// and before libc is ready. The shim's name for the one x86_64 syscall sequence it
// shares with the restorer.
#pragma once

#include "restore/arch/x86_64/raw_syscall.h"

namespace mig::shim {

using arch::rawSyscall;

}  // namespace mig::shim
