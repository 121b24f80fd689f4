// See write_batch.h.
#include "rsc/write_batch.h"

#include "rsc/call_policy.h"
#include "rsc/forward_table.h"
#include "rsc/payload.h"
#include "rsc/wire.h"

#include <cstring>

namespace mig::rsc {

bool parsePipelinedWrite(kj::ArrayPtr<kj::byte> request, PipelinedWrite& w) {
  RequestHeader h;
  if (request.size() < sizeof(h) + kPayloadHeader) return false;
  memcpy(&h, request.begin(), sizeof(h));
  const Row* row = rowById(h.call);
  if (h.magic != kRequestMagic || (h.flags & ~(kFailureSeen | kNoTtou | kFileWrite)) != kNoReply ||
      row == nullptr || !mayComePipelined(*row) || h.length != request.size()) {
    return false;
  }
  const uint64_t count = loadU64(request.begin() + sizeof(h));
  const bool positioned = row->has(kPositioned);
  if (count != static_cast<uint64_t>(h.args[2]) || count > kMaxIo ||
      request.size() != sizeof(h) + payloadSize(count) || (positioned && h.args[3] < 0)) {
    return false;
  }
  w = {h.args[0], h.seq, h.order, count, h.call, positioned ? h.args[3] : -1, (h.flags & kFailureSeen) != 0,
       (h.flags & kNoTtou) != 0, (h.flags & kFileWrite) != 0};
  h.flags &= ~kFileWrite;
  memcpy(request.begin(), &h, sizeof(h));
  return true;
}

bool joinsWith(const PipelinedWrite& prev, const PipelinedWrite& next) {
  if (next.fd != prev.fd || next.call != prev.call || next.failureSeen || next.noTtou != prev.noTtou) return false;
  return prev.offset < 0 || next.offset == prev.offset + static_cast<int64_t>(prev.count);
}

int32_t WriteFailures::before(const PipelinedWrite& w) {
  auto it = failed_.find(w.fd);
  if (it == failed_.end()) return 0;
  if (!w.failureSeen) return it->second;
  failed_.erase(it);
  return 0;
}

kj::Array<kj::byte> joinWrites(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> parts) {
  uint64_t total = 0;
  for (auto p : parts) total += loadU64(p.begin() + sizeof(RequestHeader));
  auto out = kj::heapArray<kj::byte>(sizeof(RequestHeader) + payloadSize(total));
  RequestHeader h, first;
  memcpy(&h, parts.back().begin(), sizeof(h));
  memcpy(&first, parts.front().begin(), sizeof(first));
  h.length = static_cast<uint32_t>(out.size());
  h.args[2] = static_cast<int64_t>(total);
  h.args[3] = first.args[3];  // pwrite64: where the first part goes
  h.flags = first.flags;       // kFailureSeen: only a first part has it (joinsWith)
  memcpy(out.begin(), &h, sizeof(h));
  storeU64(out.begin() + sizeof(h), total);
  kj::byte* at = out.begin() + sizeof(h) + kPayloadHeader;
  for (auto p : parts) {
    const uint64_t n = loadU64(p.begin() + sizeof(RequestHeader));
    memcpy(at, p.begin() + sizeof(RequestHeader) + kPayloadHeader, n);
    at += n;
  }
  memset(at, 0, static_cast<size_t>(out.end() - at));
  return out;
}

kj::Array<kj::byte> deferredFailure(const PipelinedWrite& w, int32_t error) {
  ReplyHeader r{};
  r.magic = kReplyMagic;
  r.length = sizeof(r);
  r.seq = w.seq;
  r.result = w.fd;
  r.error = error;
  r.flags = kDeferredFailure;
  return kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(&r), sizeof(r));
}

}  // namespace mig::rsc
