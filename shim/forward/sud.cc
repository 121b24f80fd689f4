// See sud.h. The shim's code range comes from its own ELF program headers, found
// through the linker-defined __ehdr_start: no dl_iterate_phdr (which takes the
// loader's lock) and no allocation, so threads can enable dispatch while others are
// parked anywhere.
#include "shim/forward/sud.h"

#include "shim/raw_syscall.h"

#include <elf.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

extern "C" const char __ehdr_start[] __attribute__((visibility("hidden")));

namespace mig::forward {

thread_local volatile uint8_t t_selector MIG_TLS;
thread_local uint8_t t_sudOn MIG_TLS;

CodeRange shimText() {
  static CodeRange cached;  // written once with the same value by whoever gets here first
  if (cached.end != 0) return cached;
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(__ehdr_start);
  const auto* ph = reinterpret_cast<const Elf64_Phdr*>(__ehdr_start + eh->e_phoff);
  uint64_t bias = 0;
  for (int i = 0; i < eh->e_phnum; ++i) {
    if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0) {
      bias = reinterpret_cast<uint64_t>(__ehdr_start) - ph[i].p_vaddr;
      break;
    }
  }
  CodeRange r{0, 0};
  for (int i = 0; i < eh->e_phnum; ++i) {
    if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & PF_X)) continue;
    r.start = bias + ph[i].p_vaddr;
    r.end = r.start + ph[i].p_memsz;
    break;
  }
  cached = r;
  return r;
}

bool enableSud() {
  CodeRange text = shimText();
  if (text.end == 0) return false;
  long r = mig::shim::rawSyscall(SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON,
                                 static_cast<long>(text.start), static_cast<long>(text.end - text.start),
                                 reinterpret_cast<long>(&t_selector));
  t_sudOn = r == 0;
  return r == 0;
}

void disableSud() {
  mig::shim::rawSyscall(SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0);
  t_sudOn = 0;
}

}  // namespace mig::forward
