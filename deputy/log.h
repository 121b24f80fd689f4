// MIG_LOG=FILE (shim/log.h has the shim's half): the deputy appends a line to FILE for
// what it does for the job (each forwarded call it runs and its result, each signal it
// passes on, registration and the end), never to its stdout or stderr, which are the
// job's. The fd is one of the deputy's own (own_fds.h).
#pragma once

#include <kj/array.h>
#include <kj/string.h>

namespace mig::deputy {

// Opens MIG_LOG if set (after planFdSpace: the fd goes to the deputy's space).
void openLog();
bool logging();
// One line, with the deputy's PID in front.
void log(kj::StringPtr line);
// A forwarded call's request and the dispatcher's reply, as one line.
void logCall(kj::ArrayPtr<const kj::byte> request, kj::ArrayPtr<const kj::byte> reply);

}  // namespace mig::deputy
