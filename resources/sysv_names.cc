// See sysv_names.h. An id is taken when IPC_STAT on it finds an object (or one this
// user may not read); a key when an object of the kind has it.
#include "resources/sysv_names.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>

namespace mig::resources {
namespace {

union SemArg {
  int val;
  struct semid_ds* buf;
  unsigned short* array;
};

kj::String describe(kj::StringPtr kind, int32_t key, int32_t id) {
  const char* what = kind == "shm" ? "shared memory segment" : kind == "sem" ? "semaphore set" : "message queue";
  if (key == IPC_PRIVATE) return kj::str("System V ", what, " (IPC_PRIVATE, id ", id, ")");
  char hex[16];
  snprintf(hex, sizeof(hex), "0x%08x", static_cast<uint32_t>(key));
  return kj::str("System V ", what, " with key ", hex, " (id ", id, ")");
}

}  // namespace

kj::Maybe<kj::String> sysvNameTaken(kj::StringPtr kind, int32_t key, int32_t id) {
  int byId = -1, byKey = -1;
  if (kind == "shm") {
    struct shmid_ds ds {};
    byId = shmctl(id, IPC_STAT, &ds);
    if (byId != 0 && errno != EINVAL && errno != EIDRM) byId = 0;
    if (key != IPC_PRIVATE) byKey = shmget(key, 0, 0);
  } else if (kind == "sem") {
    struct semid_ds ds {};
    SemArg arg{};
    arg.buf = &ds;
    byId = semctl(id, 0, IPC_STAT, arg);
    if (byId != 0 && errno != EINVAL && errno != EIDRM) byId = 0;
    if (key != IPC_PRIVATE) byKey = semget(key, 0, 0);
  } else if (kind == "msg") {
    struct msqid_ds ds {};
    byId = msgctl(id, IPC_STAT, &ds);
    if (byId != 0 && errno != EINVAL && errno != EIDRM) byId = 0;
    if (key != IPC_PRIVATE) byKey = msgget(key, 0);
  } else {
    return kj::str("a System V object of an unknown kind (", kind, ")");
  }
  if (byKey >= 0 || (byKey < 0 && key != IPC_PRIVATE && errno != ENOENT)) {
    return kj::str("the key of the job's ", describe(kind, key, id), " is taken on this host");
  }
  if (byId >= 0) return kj::str("the id of the job's ", describe(kind, key, id), " is taken on this host");
  return nullptr;
}

}  // namespace mig::resources
