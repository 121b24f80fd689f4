// The shim's part of a hop back home (deputy/homecoming.h): restored in its deputy's
// process, the job runs local again, and a thread that was waiting for home's answer
// when it was frozen gets the answer the deputy carried, or runs its call here.
#pragma once

#include "rsc/forward_table.h"

#include <cstdint>

namespace mig::forward {

// Control thread, after the restore, before the threads are released: maps the
// deputy's carried answers (carried_replies.h) from `fd` (or none, -1) and closes it.
void takeCarriedReplies(int fd);

// A call this thread sent home before the freeze (its `seq`), resumed where nothing is
// forwarded any more: the deputy's answer if it ran the call (decoded into the call's
// buffers through `buf`, of `cap` bytes). Else the application's system call is to run
// here, once: this returns -EIO for the handler in between (whatever it makes of it is
// dropped) and takeRunHere() tells the SIGSYS handler to make the trapped call itself.
long answerAfterHomecoming(const rsc::Row& row, const int64_t args[6], uint64_t seq, uint32_t thread, uint8_t* buf,
                           uint64_t cap);

// Whether this thread's trapped call must be made here after all (answerAfterHomecoming);
// clears it.
bool takeRunHere();

}  // namespace mig::forward
