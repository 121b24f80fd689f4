// Reads of home streams served from bytes pushed ahead (pushed_reads.h).
#include "shadow/pushed_reads.h"

#include "rsc/forward_table.h"
#include "rsc/wire.h"
#include "shadow/daemon.h"
#include "shadow/error.h"
#include "shadow/job_calls.h"

#include <kj/debug.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <deque>

namespace mig::shadow {
namespace {

// Bytes of one stream pushed here and not yet taken at home, at most.
constexpr uint64_t kWindow = 512u << 10;
// Reads served go home to be taken once they hold a quarter of the window, or this
// long after the first of them: not one message (and a wake-up of the deputy) a read.
// Before anything that needs them taken they go at once (drained).
constexpr uint64_t kTakeAfterMs = 2;
// Reads that served this much and left nothing here go at once too: the deputy has sent
// all it saw, and what it sees is bounded by the home socket's receive buffer (often
// 64 KiB or less), not by the window: until they are taken that buffer stays full, the
// peer stays held back, and each such buffer waited kTakeAfterMs (32 MB/s at most).
// Small messages (a request and its answer) still wait for the timer: one take for many.
constexpr uint64_t kTakeDrained = 16u << 10;

// On unless MIG_PUSH_READS=0 is in shadowd's environment: on this VM it wins the
// throughput of small reads, loaded or not, and its round trip is the called one's
// within the noise (docs/design.md "Reads of home streams pushed ahead").
bool enabledByEnvironment() {
  const char* v = getenv("MIG_PUSH_READS");
  return v == nullptr || strcmp(v, "0") != 0;
}

// Takes rsc::kAgain off (the deputy knows no such flag: the call is the same call);
// whether it was there.
bool dropAgain(kj::ArrayPtr<kj::byte> request) {
  uint32_t flags;
  constexpr size_t at = offsetof(rsc::RequestHeader, flags);
  memcpy(&flags, request.begin() + at, sizeof(flags));
  if ((flags & rsc::kAgain) == 0) return false;
  flags &= ~rsc::kAgain;
  memcpy(request.begin() + at, &flags, sizeof(flags));
  return true;
}

rsc::RequestHeader headerOf(kj::ArrayPtr<const kj::byte> request) {
  rsc::RequestHeader h;
  memcpy(&h, request.begin(), sizeof(h));
  return h;
}

}  // namespace

struct PushedReads::Stream final : public kj::Refcounted {
  explicit Stream(int32_t fd) : fd(fd) {}
  const int32_t fd;
  PushBuffer buffer;
  bool stopping = false;   // its reads go home from now on; dropped once its reads are taken
  kj::Promise<void> pushCall = nullptr;  // asks for the bytes, then holds the deputy's pushing
  std::deque<Waiting> waiting;  // reads that came while nothing was here, in order
  // Reads served and not yet sent home to be taken: their requests, asking what they got.
  kj::Vector<kj::byte> served;
  uint64_t servedBytes = 0;
  uint64_t takeAt = 0;     // the offset of the first of them
  bool taking = false;     // a batch on its way home (one at a time: sent again, it runs once)
  bool takeSoon = false;   // a take is due (kTakeAfterMs)
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> drainWaiters;
  kj::Vector<kj::Function<kj::Promise<void>()>> tokens;  // one held until bytes are here (token)
  // The answers to the deputy's PushSink.bytes, held until the next take goes: sent at
  // once, each woke the deputy only to read it (and write its Finish, which woke this
  // process); held, they go in the take's write.
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> heldAnswers;
};

PushedReads::PushedReads(JobCalls& calls)
    : calls_(calls), enabled_(enabledByEnvironment()), gate_(kj::refcounted<Gate>()) {
  gate_->pushed = this;
}
PushedReads::~PushedReads() { gate_->pushed = nullptr; }

kj::Promise<kj::Array<kj::byte>> PushedReads::call(kj::Array<kj::byte> request) {
  if (!enabled_) {
    dropAgain(request);
    return calls_.callHome(kj::mv(request));
  }
  const bool again = dropAgain(request);
  const rsc::RequestHeader h = headerOf(request);
  const rsc::Row* row = rsc::rowById(h.call);
  const int32_t fd = row != nullptr && row->fdArg >= 0 ? static_cast<int32_t>(h.args[row->fdArg]) : -1;
  const bool read = h.call == static_cast<uint32_t>(rsc::CallId::Read);
  const bool plain = (h.flags & ~rsc::kNoTtin) == 0;  // kNoTtin concerns the terminal, never pushed
  if (read && !again && !frozen_ && plain && h.args[1] != 0 && h.args[2] > 0 && fd >= 0 &&
      home_.count(fd) == 0 && notPushable_.count(fd) == 0) {
    auto it = streams_.find(fd);
    auto full = fullReads_.find(fd);
    if (it == streams_.end() && full != fullReads_.end() && full->second >= kFullReadsBeforePushing) {
      it = streams_.emplace(fd, kj::refcounted<Stream>(fd)).first;
      push(*it->second);
    }
    if (it == streams_.end()) return firstReads(kj::mv(request), fd);
    if (!it->second->stopping) return serve(*it->second, kj::mv(request));
  }
  // Home, as before: after the reads served from the streams it concerns are taken
  // there. A write cannot change what the fd gives; anything else may (its mode, its
  // file: a close or a dup3 onto it), so their pushing stops and starts afresh.
  const bool writes = h.call == static_cast<uint32_t>(rsc::CallId::Write) ||
                      h.call == static_cast<uint32_t>(rsc::CallId::Sendto);
  const int32_t replaced = h.call == static_cast<uint32_t>(rsc::CallId::Close) ? fd
                           : h.call == static_cast<uint32_t>(rsc::CallId::Dup3) ? static_cast<int32_t>(h.args[1])
                                                                                  : -1;
  if (replaced >= 0) {
    notPushable_.erase(replaced);
    fullReads_.erase(replaced);
  }
  kj::Vector<kj::Promise<void>> before;
  for (int32_t f : {writes ? -1 : fd, replaced}) {
    auto it = f >= 0 ? streams_.find(f) : streams_.end();
    if (it == streams_.end()) continue;
    before.add(drained(*it->second));
    stop(f);
  }
  const int32_t inputFd = row != nullptr && row->has(rsc::kTakesInput) ? fd : -1;
  if (inputFd >= 0) ++home_[inputFd];
  if (before.empty()) return goHome(kj::mv(request), inputFd);  // the usual case: nothing to wait for
  return kj::joinPromises(before.releaseAsArray()).then([this, request = kj::mv(request), inputFd]() mutable {
    return goHome(kj::mv(request), inputFd);
  });
}

// A read of a stream not pushed yet goes home as a call; pushing starts once reads in
// a row found as many bytes as they asked for, that is, bytes come faster than the job
// reads them. A job that waits for each small message in its read (a request and its
// answer) gains nothing from pushing, which cannot save the wake-ups of a read already
// waiting and adds the deputy's look at the bytes and their take (1.5x the round trip
// with 1 MiB reads in bench/network_relay_bench.sh), so its reads stay calls.
kj::Promise<kj::Array<kj::byte>> PushedReads::firstReads(kj::Array<kj::byte> request, int32_t fd) {
  const int64_t asked = static_cast<int64_t>(headerOf(request).args[2]);
  ++home_[fd];
  return goHome(kj::mv(request), fd).then([this, fd, asked](kj::Array<kj::byte> reply) {
    rsc::ReplyHeader h{};
    if (reply.size() >= sizeof(h)) memcpy(&h, reply.begin(), sizeof(h));
    if (h.result == asked) {
      ++fullReads_[fd];
    } else {
      fullReads_.erase(fd);
    }
    return kj::mv(reply);
  });
}

// While a call that takes input from `inputFd` goes home no stream of it starts: its
// first bytes would be ones that call then takes.
kj::Promise<kj::Array<kj::byte>> PushedReads::goHome(kj::Array<kj::byte> request, int32_t inputFd) {
  auto reply = calls_.callHome(kj::mv(request));
  if (inputFd < 0) return reply;
  return reply.attach(kj::defer([this, inputFd]() {
    auto it = home_.find(inputFd);
    if (it != home_.end() && --it->second == 0) home_.erase(it);
  }));
}

kj::Promise<kj::Array<kj::byte>> PushedReads::serve(Stream& s, kj::Array<kj::byte> request) {
  // Reads whose thread went away (a checkpoint) hold no place in the line.
  while (!s.waiting.empty() && !s.waiting.front().done->isWaiting()) s.waiting.pop_front();
  if (s.waiting.empty() && s.buffer.readable()) return readNow(s, request);
  auto paf = kj::newPromiseAndFulfiller<Served>();
  s.waiting.push_back(Waiting{kj::mv(request), kj::mv(paf.fulfiller)});
  return paf.promise.then([this](Served served) -> kj::Promise<kj::Array<kj::byte>> {
    if (served.reply != nullptr) return kj::mv(served.reply);
    return call(kj::mv(served.request));  // its stream stopped: as if it came now
  });
}

bool PushedReads::cancel(uint32_t thread, uint64_t seq) {
  for (auto& [fd, s] : streams_) {
    for (auto it = s->waiting.begin(); it != s->waiting.end(); ++it) {
      const rsc::RequestHeader h = headerOf(it->request);
      if (h.thread != thread || h.seq != seq || !it->done->isWaiting()) continue;
      const rsc::ReplyHeader r = rsc::failureReply(seq, EINTR);
      it->done->fulfill(Served{kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(&r), sizeof(r)), nullptr});
      s->waiting.erase(it);
      return true;
    }
  }
  return false;
}

kj::Array<kj::byte> PushedReads::readNow(Stream& s, kj::ArrayPtr<const kj::byte> request) {
  rsc::RequestHeader h = headerOf(request);
  uint64_t taken = 0;
  auto reply = s.buffer.read(h, taken);
  if (taken > 0) {
    h.args[2] = static_cast<int64_t>(taken);  // at home it takes what it got here
    s.served.addAll(kj::arrayPtr(reinterpret_cast<const kj::byte*>(&h), sizeof(h)));
    s.servedBytes += taken;
    if (s.servedBytes >= kWindow / 4 || (s.servedBytes >= kTakeDrained && s.buffer.size() == 0)) {
      take(s);
    } else if (!s.takeSoon) {
      s.takeSoon = true;
      auto later = calls_.d_.io().provider->getTimer().afterDelay(kTakeAfterMs * kj::MILLISECONDS);
      calls_.d_.tasks().add(later.then([this, s = kj::addRef(s)]() mutable {
        s->takeSoon = false;
        take(*s);
      }));
    }
  }
  return reply;
}

void PushedReads::answerWaiting(Stream& s) {
  if (frozen_) return;  // a checkpoint's barrier is answered: nothing more is served
  while (!s.waiting.empty() && s.buffer.readable()) {
    Waiting w = kj::mv(s.waiting.front());
    s.waiting.pop_front();
    if (!w.done->isWaiting()) continue;  // its thread went away (a checkpoint): never served
    w.done->fulfill(Served{readNow(s, w.request), nullptr});
  }
}

namespace {

// The job's host's end of a stream's pushing: what the deputy sends, into the stream.
class Sink final : public rpc::PushSink::Server {
 public:
  Sink(kj::Function<kj::Promise<void>(capnp::Data::Reader, uint64_t, rpc::PeekEnd, int32_t)> arrived)
      : arrived_(kj::mv(arrived)) {}
  kj::Promise<void> bytes(BytesContext context) override {
    auto p = context.getParams();
    return arrived_(p.getData(), p.getAt(), p.getEnd(), p.getError());
  }

 private:
  kj::Function<kj::Promise<void>(capnp::Data::Reader, uint64_t, rpc::PeekEnd, int32_t)> arrived_;
};

}  // namespace

// Asks the deputy to push the stream's bytes from where this one is (again on each
// resumed link: the old pushing went with the old link).
void PushedReads::push(Stream& s) {
  if (s.stopping || calls_.lost_) return;
  auto req = calls_.deputy().pushReadsRequest();
  req.setFd(s.fd);
  req.setFrom(s.buffer.endOffset());
  req.setFresh(!s.buffer.started());
  req.setWindow(static_cast<uint32_t>(kWindow));
  req.setSink(kj::heap<Sink>([this, s = kj::addRef(s)](capnp::Data::Reader data, uint64_t at, rpc::PeekEnd end,
                                                        int32_t error) mutable -> kj::Promise<void> {
    arrived(*s, data, at, end, error);
    if (s->stopping) return kj::READY_NOW;
    auto paf = kj::newPromiseAndFulfiller<void>();
    s->heldAnswers.add(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }));
  const uint64_t generation = calls_.generation_;
  s.pushCall = req.send()
                   .then(
                       [this, &s, generation](capnp::Response<rpc::Deputy::PushReadsResults> r) -> kj::Promise<void> {
                         if (r.getEnd() != rpc::PeekEnd::MORE) {
                           arrived(s, nullptr, r.getAt(), r.getEnd(), 0);
                           return kj::READY_NOW;
                         }
                         if (!s.buffer.started()) start(s, r.getAt());
                         // Held until a newer link is up: then asked again from there.
                         auto pushing = r.getPushing();
                         return calls_.nextLink(generation).attach(kj::mv(pushing), kj::mv(r)).then([this, &s]() {
                           again(s);
                         });
                       },
                       [this, &s, generation](kj::Exception&& e) -> kj::Promise<void> {
                         if (calls_.resumes(e)) {
                           calls_.startRelink();
                           return calls_.nextLink(generation).then([this, &s]() { again(s); });
                         }
                         calls_.d_.log(kj::str("job ", calls_.jobId_, ": reads of fd ", s.fd,
                                               " are calls again: pushing them failed: ", oneLine(e.getDescription())));
                         stop(s.fd);
                         return kj::READY_NOW;
                       })
                   .eagerlyEvaluate(nullptr);
}

// On a later turn: the promise that asks runs now.
void PushedReads::again(Stream& s) {
  calls_.d_.tasks().add(kj::evalLater([this, s = kj::addRef(s)]() mutable { push(*s); }));
}

void PushedReads::start(Stream& s, uint64_t at) {
  s.buffer.start(at);
  s.takeAt = at;
  if (!told_) {  // once a job: a server may have thousands of connections
    told_ = true;
    calls_.d_.log(kj::str("job ", calls_.jobId_, ": reads of its home streams are pushed ahead (the first: fd ", s.fd, ")"));
  }
}

void PushedReads::arrived(Stream& s, capnp::Data::Reader data, uint64_t at, rpc::PeekEnd end, int32_t error) {
  if (s.stopping) return;
  switch (end) {
    case rpc::PeekEnd::SHARED:
      if (!toldShared_) {  // once a job, as for pushing
        toldShared_ = true;
        calls_.d_.log(kj::str("job ", calls_.jobId_, ": reads of fd ", s.fd,
                              " stay calls: another process at home may read it too (the first such stream)"));
      }
      [[fallthrough]];
    case rpc::PeekEnd::NOT_PUSHABLE:
      notPushable_[s.fd] = true;
      stop(s.fd);
      return;
    case rpc::PeekEnd::OUT_OF_STEP:
      calls_.d_.log(kj::str("job ", calls_.jobId_, ": fd ", s.fd, " was read at home by someone else: its reads start afresh"));
      stop(s.fd);
      return;
    default:
      break;
  }
  if (!s.buffer.started()) start(s, at);
  if (!s.buffer.add(at, data)) {
    calls_.d_.log(kj::str("job ", calls_.jobId_, ": fd ", s.fd, ": pushed bytes out of order: its reads start afresh"));
    stop(s.fd);
    return;
  }
  if (end == rpc::PeekEnd::END_OF_STREAM) s.buffer.end(0);
  if (end == rpc::PeekEnd::FAILED) s.buffer.end(error > 0 ? error : EIO);
  answerWaiting(s);
  if (s.buffer.readable()) releaseTokens(s);
}

kj::Promise<void> PushedReads::token(int32_t fd, kj::Function<kj::Promise<void>()> write) {
  auto it = streams_.find(fd);
  if (it == streams_.end() || it->second->stopping || it->second->buffer.readable()) return write();
  // One is enough: each take at home may say readable again, and a pile of tokens let
  // go at once would fill the stand-in of a job that never polls.
  auto& held = it->second->tokens;
  if (held.empty()) held.add(kj::mv(write));
  return kj::READY_NOW;
}

void PushedReads::releaseTokens(Stream& s) {
  for (auto& write : s.tokens) calls_.d_.tasks().add(write());
  s.tokens.clear();
}

// The reads served go home to be taken, a batch at a time; what is served while one is
// on its way goes in the next.
void PushedReads::take(Stream& s) {
  if (s.taking || s.served.empty()) return;
  s.taking = true;
  releaseAnswers(s);
  auto reads = s.served.releaseAsArray();
  const uint64_t at = s.takeAt;
  s.takeAt += s.servedBytes;
  s.servedBytes = 0;
  sendTaken(kj::addRef(s), at, kj::mv(reads));
}

void PushedReads::sendTaken(kj::Own<Stream> s, uint64_t at, kj::Array<kj::byte> reads) {
  if (calls_.lost_) {
    takenHome(*s);
    return;
  }
  const uint64_t generation = calls_.generation_;
  auto req = calls_.deputy().takenRequest();
  req.setFd(s->fd);
  req.setAt(at);
  req.setReads(reads);
  Stream& ref = *s;
  auto sent = req.send().then(
      [this, &ref](capnp::Response<rpc::Deputy::TakenResults>&&) -> kj::Promise<void> {
        takenHome(ref);
        return kj::READY_NOW;
      },
      [this, s = kj::mv(s), generation, at, reads = kj::mv(reads)](kj::Exception&& e) mutable -> kj::Promise<void> {
        if (calls_.resumes(e)) {
          calls_.startRelink();
          return calls_.nextLink(generation).then([this, s = kj::mv(s), at, reads = kj::mv(reads)]() mutable {
            sendTaken(kj::mv(s), at, kj::mv(reads));
          });
        }
        // Home unreachable: the job's calls fail with EIO from now on anyway.
        calls_.d_.log(kj::str("job ", calls_.jobId_, ": reads served here of fd ", s->fd,
                              " could not be taken at home: ", oneLine(e.getDescription())));
        takenHome(*s);
        return kj::READY_NOW;
      });
  calls_.d_.tasks().add(sent.attach(kj::addRef(ref), kj::addRef(calls_)));
}

void PushedReads::takenHome(Stream& s) {
  s.taking = false;
  take(s);
  if (s.taking) return;
  for (auto& w : s.drainWaiters) w->fulfill();
  s.drainWaiters.clear();
  if (s.stopping) forget(s);
}

kj::Promise<void> PushedReads::drained(Stream& s) {
  take(s);
  if (!s.taking && s.served.empty()) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  s.drainWaiters.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

// No read of `fd` is served from now on: the ones waiting go home (after the batch on
// its way), and the stream is dropped once its reads are all taken.
void PushedReads::stop(int32_t fd) {
  auto it = streams_.find(fd);
  if (it == streams_.end() || it->second->stopping) return;
  Stream& s = *it->second;
  s.stopping = true;
  auto waiting = kj::mv(s.waiting);
  for (auto& w : waiting) {
    if (w.done->isWaiting()) w.done->fulfill(Served{nullptr, kj::mv(w.request)});
  }
  releaseTokens(s);
  releaseAnswers(s);
  take(s);
  if (!s.taking && s.served.empty()) forget(s);
}

void PushedReads::releaseAnswers(Stream& s) {
  for (auto& f : s.heldAnswers) f->fulfill();
  s.heldAnswers.clear();
}

// Dropped on a later turn (its push call may be what runs now); a newer stream of the same
// fd stays.
void PushedReads::forget(Stream& s) {
  calls_.d_.tasks().add(kj::evalLater([this, s = kj::addRef(s)]() mutable {
    auto it = streams_.find(s->fd);
    if (it != streams_.end() && it->second.get() == s.get()) streams_.erase(it);
    s->pushCall = nullptr;  // the deputy's pushing ends: its copy of the fd closed
  }));
}

void PushedReads::resume() {
  frozen_ = false;
  for (auto& s : streams_) answerWaiting(*s.second);
}

kj::Promise<void> PushedReads::settle() {
  frozen_ = true;
  kj::Vector<kj::Promise<void>> all;
  for (auto& s : streams_) all.add(drained(*s.second));
  return kj::joinPromises(all.releaseAsArray());
}

}  // namespace mig::shadow
