// TEST HOOK, not a feature: MIG_FORWARD_TEST_CONFIG=FILE makes the shim activate
// forwarding at startup, as if the process had just been restored after a migration
// with the Config in FILE (forward_config.h layout), so the forwarding machinery can
// be tested without a checkpoint, a restart and a home host (shim/forward/tests/).
// The calling (main) thread is dispatched at once; threads it creates later are
// dispatched through pthread_create. Ignored when the variable is unset or empty;
// a file that is not a valid Config leaves forwarding off. The variable is removed
// from the environment, so programs the process runs do not see it.
#include "shim/forward/activation.h"

#include <cstdlib>
#include <fcntl.h>
#include <unistd.h>

namespace mig::forward {
namespace {

__attribute__((constructor)) void forwardTestHook() {
  const char* path = getenv("MIG_FORWARD_TEST_CONFIG");
  if (path == nullptr || path[0] == '\0') return;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  // Children run undispatched in a migrated process (clone.cc); so here: the
  // programs they exec must not turn forwarding on for themselves.
  unsetenv("MIG_FORWARD_TEST_CONFIG");
  if (fd < 0) return;
  bool ok = loadConfig(fd);
  close(fd);
  if (!ok) return;
  activateProcess();
  dispatchThisThread();
}

}  // namespace
}  // namespace mig::forward
