// The deputy's half of reads pushed ahead (shadow/pushed_reads.h has the whole
// protocol): the job's host asks for the bytes of a home stream past an offset
// (Deputy.pushReads) and is sent them as they arrive, up to a window, without their
// being taken from the kernel; once the job has read them there, the host says so
// (Deputy.taken) and they are read here, as the job's own read calls, in order and once. Until then they stay in the socket or
// pipe at home: a checkpoint, a hop or a return home finds them where they were, and
// the kernel's buffer holds the peer back as it would for a local reader.
//
// Offsets count, per fd number, the bytes `taken` read: an offset names one byte of
// the stream whichever link, or link resumed, asks.
#pragma once

#include "deputy/sole_reader.h"
#include "shadow/mig.capnp.h"

#include <kj/async-unix.h>
#include <kj/async.h>
#include <kj/function.h>

#include <map>
#include <vector>

namespace mig::deputy {

class PushedReads : private kj::TaskSet::ErrorHandler {
 public:
  using PushContext = capnp::CallContext<rpc::Deputy::PushReadsParams, rpc::Deputy::PushReadsResults>;
  using TakenContext = capnp::CallContext<rpc::Deputy::TakenParams, rpc::Deputy::TakenResults>;
  // `runRead(request)`: runs one of the job's read requests as a forwarded call that
  // is remembered for a call sent again (call_runner.h), returning its result;
  // `inputTaken(fd)`: the readiness watches of that file look again (readiness.h).
  PushedReads(kj::UnixEventPort& port, kj::Function<int64_t(kj::ArrayPtr<const kj::byte>)> runRead,
              kj::Function<kj::Promise<void>(int fd)> inputTaken);
  ~PushedReads();

  kj::Promise<void> push(PushContext context);
  kj::Promise<void> taken(TakenContext context);

 private:
  class Pusher;  // one fd's bytes going to one sink (pushed_reads.cc)
  struct Stream {
    uint64_t taken = 0;   // bytes read by `taken` so far: the offset of what the kernel holds first
    bool pipe = false;    // a pipe (looked at with tee), else a socket (MSG_PEEK)
    kj::Vector<Pusher*> pushers;
  };
  // What a look at a stream found: `n` new bytes in buffer_, or none and why.
  enum class Found { BYTES, NONE_YET, END, FAILED };
  Found peekBytes(int fd, bool pipe, size_t skip, size_t max, size_t& n, int& error);

  kj::UnixEventPort& port_;
  kj::Function<int64_t(kj::ArrayPtr<const kj::byte>)> runRead_;
  kj::Function<kj::Promise<void>(int fd)> inputTaken_;
  std::map<int, Stream> streams_;
  SoleReaders sole_;  // no stream another process at home may read is pushed
  void taskFailed(kj::Exception&&) override {}  // a token not delivered: the link is gone
  std::vector<kj::byte> buffer_;  // a look's bytes
  int scratch_[2] = {-1, -1};     // a pipe that tee(2) copies a pipe's bytes into
  kj::TaskSet tasks_;
};

}  // namespace mig::deputy
