// Writes to blocking streams tried on the deputy's loop first (stream_write.h).
#include "deputy/stream_write.h"

#include "rsc/forward_table.h"
#include "rsc/payload.h"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/uio.h>

namespace mig::deputy {
namespace {

kj::Array<kj::byte> resultReply(uint64_t seq, int64_t result) {
  rsc::ReplyHeader r = rsc::failureReply(seq, 0);
  r.result = result;
  return kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(&r), sizeof(r));
}

kj::Array<kj::byte> errorReply(uint64_t seq, int error) {
  const rsc::ReplyHeader r = rsc::failureReply(seq, error);
  return kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(&r), sizeof(r));
}

}  // namespace

kj::Maybe<WriteNow> writeNow(kj::ArrayPtr<const kj::byte> request, int fd) {
  using rsc::kPayloadHeader;
  rsc::RequestHeader h;
  if (request.size() < sizeof(h) + kPayloadHeader) return nullptr;
  memcpy(&h, request.begin(), sizeof(h));
  const bool isWrite = h.call == static_cast<uint32_t>(rsc::CallId::Write);
  const bool isSend = h.call == static_cast<uint32_t>(rsc::CallId::Sendto);
  // Anything the dispatcher would refuse, or answer in a way of its own, goes its way.
  if (h.magic != rsc::kRequestMagic || h.length != request.size() || (!isWrite && !isSend)) return nullptr;
  if ((h.flags & ~(rsc::kNoReply | rsc::kNoTtin | rsc::kFailureSeen)) != 0) return nullptr;
  if (isSend && (h.flags & rsc::kNoReply)) return nullptr;
  // Both rows: fd, the buffer (the first payload), its length (args[2]).
  const uint8_t* p = request.begin() + sizeof(h);
  const uint64_t count = rsc::loadU64(p);
  const uint64_t size = rsc::payloadSize(count);
  if (count == 0 || count == rsc::kNullPayload || count != static_cast<uint64_t>(h.args[2]) || count > rsc::kMaxIo ||
      size > request.size() - sizeof(h)) {
    return nullptr;
  }
  const int sendFlags = static_cast<int>(h.args[3]);
  if (isSend) {
    // A send to no address (a connected stream), blocking as the job asked it: a
    // MSG_DONTWAIT of the job's own is its to see partly done.
    const uint64_t at = sizeof(h) + size;
    if (request.size() - at != kPayloadHeader || rsc::loadU64(request.begin() + at) != 0 || h.args[5] != 0 ||
        (sendFlags & MSG_DONTWAIT)) {
      return nullptr;
    }
  } else if (request.size() != sizeof(h) + size) {
    return nullptr;
  }
  const uint8_t* data = p + kPayloadHeader;
  ssize_t n;
  if (isWrite) {
    struct iovec iov = {const_cast<uint8_t*>(data), count};
    n = pwritev2(fd, &iov, 1, -1, RWF_NOWAIT);
    // A kernel or a file that cannot write without blocking: the worker writes.
    if (n < 0 && (errno == EOPNOTSUPP || errno == EINVAL || errno == EINTR)) return nullptr;
  } else {
    n = sendto(fd, data, count, sendFlags | MSG_DONTWAIT, nullptr, 0);
    if (n < 0 && errno == EINTR) return nullptr;
  }
  WriteNow now;
  if (n < 0 && errno == EAGAIN) return kj::mv(now);  // nothing taken: the whole call to a worker
  if (n < 0 || static_cast<uint64_t>(n) == count) {
    now.done = true;
    now.written = n < 0 ? 0 : static_cast<uint64_t>(n);
    if (n < 0) {
      now.reply = errorReply(h.seq, errno);
    } else if (!(h.flags & rsc::kNoReply)) {
      now.reply = resultReply(h.seq, n);
    }  // a pipelined write that worked: nothing to answer, as the dispatcher's
    return kj::mv(now);
  }
  // Part taken: the rest as a request of its own (the buffer's tail, then whatever
  // followed its payload: sendto's address).
  now.written = static_cast<uint64_t>(n);
  const uint64_t left = count - now.written;
  const size_t after = request.size() - sizeof(h) - size;
  now.rest = kj::heapArray<kj::byte>(sizeof(h) + rsc::payloadSize(left) + after);
  memset(now.rest.begin(), 0, now.rest.size());
  rsc::RequestHeader r = h;
  r.length = static_cast<uint32_t>(now.rest.size());
  r.args[2] = static_cast<int64_t>(left);
  memcpy(now.rest.begin(), &r, sizeof(r));
  kj::byte* out = now.rest.begin() + sizeof(r);
  rsc::storeU64(out, left);
  memcpy(out + kPayloadHeader, data + now.written, left);
  memcpy(out + rsc::payloadSize(left), p + size, after);
  return kj::mv(now);
}

kj::Array<kj::byte> joinedReply(const rsc::RequestHeader& h, uint64_t written, kj::Array<kj::byte> restReply) {
  if (h.flags & rsc::kNoReply) return restReply;
  rsc::ReplyHeader r{};
  int64_t more = 0;
  if (restReply.size() >= sizeof(r)) {
    memcpy(&r, restReply.begin(), sizeof(r));
    if (r.result > 0) more = r.result;
  }
  return resultReply(h.seq, static_cast<int64_t>(written) + more);
}

}  // namespace mig::deputy
