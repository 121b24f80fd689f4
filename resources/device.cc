// The character devices that are the same on every host (/dev/null, /dev/zero,
// /dev/full, /dev/random, /dev/urandom): saved as their path, reopened by path. On
// migration they stay at home like files (a forwarded read of /dev/zero is cheap).
#include "resources/fd_kind.h"
#include "resources/fd_restore.h"

#include <string_view>
#include <sys/stat.h>

namespace mig::resources {
namespace {

bool matches(const FdProbe& p, const CaptureContext&) {
  static constexpr std::string_view kSame[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"};
  if (!S_ISCHR(p.st.st_mode)) return false;
  for (std::string_view d : kSame) {
    if (p.path == d) return true;
  }
  return false;
}

void restore(FdRecord::Reader f, RestoreContext&) { reopenSaved(f, f.getPath().cStr()); }

}  // namespace

extern const FdKind kDevice = {
    .kind = FdRecord::Kind::DEVICE,
    .name = "device",
    .onMigration = OnMigration::home,
    .matches = matches,
    .restore = restore,
};

}  // namespace mig::resources
