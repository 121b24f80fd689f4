// rsc/marshal.cc: request encoding and reply decoding for the shim (see marshal.h).
// Everything here must stay async-signal-safe: plain loops and __builtin_memcpy only.
#include "rsc/marshal.h"

#include "rsc/payload.h"

#include <errno.h>

namespace mig::rsc {
namespace {

inline uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }

// Length of a NUL-terminated string, or `limit` when there is no NUL before it.
// Reads byte by byte so it never touches memory past the terminator.
uint64_t boundedStrlen(const uint8_t* s, uint64_t limit) {
  uint64_t n = 0;
  while (n < limit && s[n] != 0) ++n;
  return n;
}

// The byte count of output argument i in a reply to a call that returned `result`.
// The dispatcher builds its replies by the same rule (dispatch.cc).
uint64_t expectedOutCount(const Row& row, const int64_t args[6], uint8_t i, int64_t result) {
  const ArgSpec& s = row.args[i];
  if (result < 0) return 0;
  if (s.kind == Arg::OutBuf) {
    if (args[i] == 0) return 0;
    return min64(static_cast<uint64_t>(result), static_cast<uint64_t>(args[s.lenArg]));
  }
  return args[i] == 0 ? kNullPayload : s.size;  // OutStruct, InOutStruct
}

}  // namespace

int64_t encodeRequest(const Row& row, const int64_t args[6], uint64_t seq, uint32_t flags,
                      uint8_t* buf, uint64_t cap, uint64_t order, uint32_t thread) {
  const uint64_t limit = min64(cap, kMaxMessage);
  uint64_t off = sizeof(RequestHeader);
  if (off > limit) return -E2BIG;

  for (uint8_t i = 0; i < row.nargs; ++i) {
    const ArgSpec& s = row.args[i];
    if (s.kind == Arg::OutBuf && static_cast<uint64_t>(args[s.lenArg]) > kMaxIo) return -E2BIG;
    if (!isInput(s.kind)) continue;

    const auto* src = reinterpret_cast<const uint8_t*>(args[i]);
    uint64_t count;
    if (s.kind == Arg::InBuf) {
      count = static_cast<uint64_t>(args[s.lenArg]);
      if (count > kMaxIo) return -E2BIG;
      if (count != 0 && src == nullptr) return -EFAULT;
    } else if (src == nullptr) {
      count = kNullPayload;
    } else if (s.kind == Arg::Path) {
      count = boundedStrlen(src, kMaxPath);
      if (count == kMaxPath) return -ENAMETOOLONG;
      ++count;  // the NUL travels too
    } else {
      count = s.size;
    }

    const uint64_t size = payloadSize(count);
    if (size > limit - off) return -E2BIG;
    storeU64(buf + off, count);
    if (count != kNullPayload) {
      if (count != 0) __builtin_memcpy(buf + off + kPayloadHeader, src, count);
      for (uint64_t p = kPayloadHeader + count; p < size; ++p) buf[off + p] = 0;
    }
    off += size;
  }

  RequestHeader h;
  h.magic = kRequestMagic;
  h.length = static_cast<uint32_t>(off);
  h.seq = seq;
  h.call = static_cast<uint32_t>(row.id);
  h.flags = flags;
  for (int i = 0; i < 6; ++i) h.args[i] = args[i];
  h.order = order;
  h.thread = thread;
  h.reserved = 0;
  __builtin_memcpy(buf, &h, sizeof h);
  return static_cast<int64_t>(off);
}

int64_t decodeReply(const Row& row, const int64_t args[6], uint64_t seq, const uint8_t* msg,
                    uint64_t len, int32_t* error) {
  *error = EIO;
  if (msg == nullptr || len < sizeof(ReplyHeader) || len > kMaxMessage) return -1;
  ReplyHeader h;
  __builtin_memcpy(&h, msg, sizeof h);
  if (h.magic != kReplyMagic || h.length != len || h.seq != seq || h.flags != 0) return -1;
  const bool failed = h.result == -1;
  if (failed ? (h.error <= 0 || h.error > 4095) : (h.result < 0 || h.error != 0)) return -1;

  // A request the deputy could not take apart is answered with the header alone.
  if (failed && len == sizeof(ReplyHeader)) {
    *error = h.error;
    return -1;
  }

  // First pass: the reply must be exactly the payloads this call can produce.
  uint64_t off = sizeof(ReplyHeader);
  for (uint8_t i = 0; i < row.nargs; ++i) {
    if (!isOutput(row.args[i].kind)) continue;
    if (len - off < kPayloadHeader) return -1;
    const uint64_t count = loadU64(msg + off);
    if (count != expectedOutCount(row, args, i, h.result)) return -1;
    const uint64_t size = payloadSize(count);
    if (size > len - off) return -1;
    if (count != kNullPayload && !allZero(msg + off + kPayloadHeader + count, size - kPayloadHeader - count))
      return -1;
    off += size;
  }
  if (off != len) return -1;

  // Second pass: deliver. Counts were checked against the request's buffer sizes.
  off = sizeof(ReplyHeader);
  for (uint8_t i = 0; i < row.nargs; ++i) {
    if (!isOutput(row.args[i].kind)) continue;
    const uint64_t count = loadU64(msg + off);
    if (count != kNullPayload && count != 0)
      __builtin_memcpy(reinterpret_cast<uint8_t*>(args[i]), msg + off + kPayloadHeader, count);
    off += payloadSize(count);
  }

  *error = failed ? h.error : 0;
  return failed ? -1 : h.result;
}

uint64_t replyCapacity(const Row& row, const int64_t args[6]) {
  uint64_t size = sizeof(ReplyHeader);
  for (uint8_t i = 0; i < row.nargs; ++i) {
    const ArgSpec& s = row.args[i];
    if (s.kind == Arg::OutBuf)
      size += payloadSize(min64(static_cast<uint64_t>(args[s.lenArg]), kMaxIo));
    else if (isOutput(s.kind))
      size += payloadSize(s.size);
  }
  return min64(size, kMaxMessage);
}

}  // namespace mig::rsc
