// See push_buffer.h.
#include "shadow/push_buffer.h"

#include "rsc/payload.h"

#include <cstring>

namespace mig::shadow {

bool PushBuffer::add(uint64_t at, kj::ArrayPtr<const kj::byte> bytes) {
  if (at > end_) return false;
  const uint64_t known = end_ - at;
  if (known >= bytes.size()) return true;
  chunks_.push_back(kj::heapArray(bytes.slice(known, bytes.size())));
  size_ += bytes.size() - known;
  end_ += bytes.size() - known;
  return true;
}

void PushBuffer::end(int32_t error) {
  ended_ = true;
  error_ = error;
}

kj::Array<kj::byte> PushBuffer::read(const rsc::RequestHeader& request, uint64_t& taken) {
  taken = 0;
  if (size_ == 0 && error_ != 0) {  // the failure, once; the end after it
    const rsc::ReplyHeader h = rsc::failureReply(request.seq, error_);
    error_ = 0;
    auto reply = kj::heapArray<kj::byte>(sizeof(h));
    memcpy(reply.begin(), &h, sizeof(h));
    return reply;
  }
  rsc::ReplyHeader h{};
  h.magic = rsc::kReplyMagic;
  h.seq = request.seq;
  const uint64_t n = kj::min(static_cast<uint64_t>(request.args[2]), size_);
  h.length = sizeof(h) + rsc::payloadSize(n);
  h.result = static_cast<int64_t>(n);
  auto reply = kj::heapArray<kj::byte>(h.length);
  // Only the padding after the bytes is left to zero: the rest is written below (a
  // whole-reply memset was 2 % of the link process's CPU on a pushed stream).
  memset(reply.end() - (rsc::pad8(n) - n), 0, rsc::pad8(n) - n);
  memcpy(reply.begin(), &h, sizeof(h));
  rsc::storeU64(reply.begin() + sizeof(h), n);
  kj::byte* out = reply.begin() + sizeof(h) + rsc::kPayloadHeader;
  for (uint64_t left = n; left > 0;) {
    auto& first = chunks_.front();
    const size_t part = kj::min(left, first.size() - front_);
    memcpy(out, first.begin() + front_, part);
    out += part;
    left -= part;
    front_ += part;
    if (front_ == first.size()) {
      chunks_.pop_front();
      front_ = 0;
    }
  }
  size_ -= n;
  taken = n;
  return reply;
}

}  // namespace mig::shadow
