// Reads of home streams pushed ahead to the job's host (issue 13). A read of a home
// stream is otherwise one call home: the shim, this link process, the deputy, and back,
// four wake-ups. For a blocking SOCK_STREAM socket or pipe (a FIFO) kept at home, once
// the job reads it here the deputy sends this process its bytes as they arrive
// (Deputy.pushReads, at most kWindow bytes not yet taken) and the job's read(2)s are
// answered from them, two wake-ups, no round trip when bytes are here:
//
//   shim ── read(fd 5, 64 KiB) ──► link: bytes here? ── reply ──► shim
//             Deputy.pushReads(5, from) ──► deputy: on each edge of its copy of fd 5,
//             ◄── PushSink.bytes(at, data) ──  recv(MSG_PEEK, SO_PEEK_OFF) / tee(2):
//                                              nothing taken, up to the window
//             reads served: Deputy.taken(5, at, their requests) ──► the same reads run
//                                              at home, remembered for a call sent again
//
// The deputy only looks at the bytes: they stay in the kernel at home until the job
// has read them here (then `taken` reads them there, as the job's own read calls, in
// order and once). So the kernel's buffer at home holds the peer back as it would for
// a local reader, and a checkpoint, a hop or a return home finds every byte the job
// has not read where it was: what is here is dropped with this process. Exactly once:
//   - bytes name the stream offset they start at (the deputy counts offsets by what
//     `taken` read): after a broken link pushing is asked again from the offset
//     reached, and bytes sent twice are kept once (push_buffer.h);
//   - one batch of `taken` at a time per stream, named by its offset: one sent again
//     runs once; a call of the job on that fd other than a served read or a write
//     waits for the batch and goes home as before (pushing that fd starts afresh at its
//     next read; after a close or a dup3 onto it, of whatever file has the number);
//   - the checkpoint's barrier (rsc::kBarrier) is answered once every read served has
//     been taken at home, and no read is served from then until the job's next
//     connection: a read whose reply the checkpoint cut off is sent again (rsc::kAgain)
//     and goes home, where the deputy answers it from its run.
// What stays a call: the terminal, datagram and listening sockets, non-blocking fds,
// recv/recvfrom/recvmsg (any flags: MSG_PEEK, MSG_WAITALL, MSG_OOB), a stream's reads
// until two in a row found all they asked for (firstReads), and every read if the
// link process has MIG_PUSH_READS=0 in its environment (pushing is on by default);
// readv is the shim's reads one by one, which are served. Polls and epoll waits
// are still woken from home (the readiness stand-ins); a read after them is served here.
// A stream another process at home may read (a tree's other member, through its own
// deputy) or a named FIFO stays a call too: the deputy says so (deputy/sole_reader.h),
// as bytes pushed here would still be there for the other reader to take.
#pragma once

#include "shadow/mig.capnp.h"
#include "shadow/push_buffer.h"

#include <kj/async.h>
#include <kj/function.h>
#include <kj/refcount.h>

#include <map>

namespace mig::shadow {

class JobCalls;

class PushedReads {
 public:
  explicit PushedReads(JobCalls& calls);
  ~PushedReads();

  // A call of the job that waits for its reply: served here, or sent home by
  // `JobCalls::callHome` (after what it must follow).
  kj::Promise<kj::Array<kj::byte>> call(kj::Array<kj::byte> request);

  // A readiness token for the stand-in of `fd` (shim/forward/readiness_stand_in.h),
  // which `write` puts there. Home says the fd is readable while bytes the job has read
  // here are not yet taken there: a token for them would wake a poll whose read then
  // waits. So while its stream has nothing here, the token waits for its bytes.
  kj::Promise<void> token(int32_t fd, kj::Function<kj::Promise<void>()> write);
  // How a capability that may outlive this object reaches it (null once it is gone).
  struct Gate : public kj::Refcounted {
    PushedReads* pushed;
  };
  kj::Own<Gate> gate() { return kj::addRef(*gate_); }

  // The job's thread `thread` cancels its call `seq` (a signal its program handles,
  // rsc::kCancel): if that call is a read waiting here for pushed bytes it is answered
  // EINTR now, having taken nothing (true); else the call is not here (false).
  bool cancel(uint32_t thread, uint64_t seq);

  // The checkpoint's barrier: resolves once every read served here has been taken at
  // home; none is served from now until `resume` (the job's next connection).
  kj::Promise<void> settle();
  void resume();

 private:
  struct Stream;
  struct Served {
    kj::Array<kj::byte> reply;    // the read's, or null: it goes home after all
    kj::Array<kj::byte> request;  // then, the read
  };
  struct Waiting {
    kj::Array<kj::byte> request;
    kj::Own<kj::PromiseFulfiller<Served>> done;
  };

  kj::Promise<kj::Array<kj::byte>> serve(Stream& s, kj::Array<kj::byte> request);
  void answerWaiting(Stream& s);
  kj::Array<kj::byte> readNow(Stream& s, kj::ArrayPtr<const kj::byte> request);
  void push(Stream& s);
  void again(Stream& s);
  void start(Stream& s, uint64_t at);
  void arrived(Stream& s, capnp::Data::Reader data, uint64_t at, rpc::PeekEnd end, int32_t error);
  void take(Stream& s);
  void sendTaken(kj::Own<Stream> s, uint64_t at, kj::Array<kj::byte> reads);
  void takenHome(Stream& s);
  void stop(int32_t fd);
  void forget(Stream& s);
  kj::Promise<void> drained(Stream& s);
  void releaseTokens(Stream& s);
  void releaseAnswers(Stream& s);
  kj::Promise<kj::Array<kj::byte>> goHome(kj::Array<kj::byte> request, int32_t inputFd);
  kj::Promise<kj::Array<kj::byte>> firstReads(kj::Array<kj::byte> request, int32_t fd);

  JobCalls& calls_;
  const bool enabled_;
  bool frozen_ = false;
  bool told_ = false;  // the log says pushing has started
  bool toldShared_ = false;  // the log says a stream stays calls as another may read it at home
  std::map<int32_t, kj::Own<Stream>> streams_;   // fds whose reads are pushed
  std::map<int32_t, int> home_;                   // input calls on their way home, by fd
  std::map<int32_t, bool> notPushable_;           // the deputy said so (until closed)
  std::map<int32_t, int> fullReads_;              // reads in a row that found all they asked, by fd
  static constexpr int kFullReadsBeforePushing = 2;
  kj::Own<Gate> gate_;
};

}  // namespace mig::shadow
