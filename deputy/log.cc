// See log.h.
#include "deputy/log.h"

#include "deputy/own_fds.h"
#include "rsc/forward_table.h"
#include "rsc/wire.h"

#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace mig::deputy {
namespace {
int g_logFd = -1;
}  // namespace

void openLog() {
  const char* path = getenv("MIG_LOG");
  if (path == nullptr || path[0] == '\0') return;
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd >= 0) g_logFd = placeOwn(fd);
}

bool logging() { return g_logFd >= 0; }

void log(kj::StringPtr line) {
  if (g_logFd < 0) return;
  auto text = kj::str("mig deputy ", getpid(), ": ", line, "\n");
  (void)!write(g_logFd, text.begin(), text.size());  // O_APPEND: one write, one line
}

void logCall(kj::ArrayPtr<const kj::byte> request, kj::ArrayPtr<const kj::byte> reply) {
  if (g_logFd < 0 || request.size() < sizeof(rsc::RequestHeader)) return;
  rsc::RequestHeader q;
  memcpy(&q, request.begin(), sizeof q);
  const rsc::Row* row = rsc::rowById(q.call);
  kj::String result = kj::str("(no reply: pipelined, done)");
  if (reply.size() >= sizeof(rsc::ReplyHeader)) {
    rsc::ReplyHeader r;
    memcpy(&r, reply.begin(), sizeof r);
    result = r.result == -1 ? kj::str("-1 (", strerror(r.error), ")") : kj::str(r.result);
  }
  log(kj::str("ran ", row != nullptr ? row->function : "an unknown call", "(", q.args[0], ", ", q.args[1],
              ", ...) for thread ", q.thread, ": ", result));
}

}  // namespace mig::deputy
