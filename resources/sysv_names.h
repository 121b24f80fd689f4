// Whether a System V IPC object's key and id are free on this host: what a
// destination checks before it takes a job whose objects will be made here with
// them (resources/sysv_ipc.h), so that a taken one refuses the hop before the job is
// frozen. Apart from sysv_ipc.cc, which captures and makes objects, because shadowd
// needs only this.
#pragma once

#include <kj/common.h>
#include <kj/string.h>

#include <cstdint>

namespace mig::resources {

// One line saying that the key or the id of the object (kind "shm", "sem" or "msg")
// is taken here, naming it; nullptr when both are free (IPC_PRIVATE has no key).
kj::Maybe<kj::String> sysvNameTaken(kj::StringPtr kind, int32_t key, int32_t id);

}  // namespace mig::resources
