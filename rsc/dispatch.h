// rsc/dispatch.h: the deputy's half of a forwarded call. One generic dispatcher runs
// every row of the forward table (rsc/forward_table.h, made from forward_calls.def)
// by calling the row's libc function through libffi (or the system call itself, for
// a Fixup::RawSyscall row), and is the whitelist: a request that names no row, or
// that does not match its row exactly, runs nothing.
#pragma once

#include "rsc/forward_table.h"

#include <kj/array.h>
#include <kj/common.h>

namespace mig::rsc {

class Dispatcher {
 public:
  // Resolves every row's libc function once. With execute = false nothing is ever
  // called: requests are validated and answered as if each call returned 0 (for
  // fuzzing the parser without touching the file system). `table`: the real one, or a
  // test's (which must outlive the dispatcher).
  explicit Dispatcher(bool execute = true, const Table& table = forwardTable());
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Runs one request (rsc/wire.h) and returns its reply. A malformed request is
  // answered with a header-only reply (result -1, error EPROTO; ENOSYS for a call id
  // not in the table), never an exception. A request with kNoReply that succeeded
  // gets an empty array: there is nothing to send. Replies never exceed kMaxMessage.
  kj::Array<kj::byte> call(kj::ArrayPtr<const kj::byte> request);

  // Fds the caller keeps for itself in the same table (the deputy's, deputy/own_fds.h):
  // a dup2 or dup3 onto one is answered EMFILE (as a full table would be), a close of
  // one EBADF (the job never had it), and nothing runs.
  void keepOwnFds(bool (*isOwn)(int64_t fd)) { isOwn_ = isOwn; }

 private:
  bool (*isOwn_)(int64_t fd) = nullptr;
  const Table& table_;
  struct Prepared;                // a row's function and libffi call interface
  kj::Array<Prepared> prepared_;  // by table index
  bool execute_;
};

}  // namespace mig::rsc
