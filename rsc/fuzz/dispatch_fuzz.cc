// libFuzzer target: arbitrary bytes as a forwarded-call request. The dispatcher runs
// in validate-only mode (nothing executes); every reply must be well formed, and the
// shim's decodeReply must accept it when given buffers of the request's sizes.
#include "rsc/dispatch.h"
#include "rsc/forward_table.h"
#include "rsc/marshal.h"
#include "rsc/payload.h"
#include "rsc/wire.h"

#include <cstdint>
#include <cstring>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mig::rsc;
  static Dispatcher dispatcher(false);
  static std::vector<uint8_t> outputs[6];

  kj::Array<kj::byte> reply = dispatcher.call(kj::arrayPtr(data, size));
  if (reply.size() > kMaxMessage) __builtin_trap();
  if (reply.size() == 0) {
    // Only a request that asked for no reply and "succeeded" may go unanswered.
    RequestHeader h;
    if (size < sizeof h) __builtin_trap();
    memcpy(&h, data, sizeof h);
    if ((h.flags & kNoReply) == 0) __builtin_trap();
    return 0;
  }
  ReplyHeader r;
  if (reply.size() < sizeof r) __builtin_trap();
  memcpy(&r, reply.begin(), sizeof r);
  if (r.magic != kReplyMagic || r.length != reply.size()) __builtin_trap();
  if (r.result != 0 && r.result != -1) __builtin_trap();  // nothing ran: 0 or a refusal
  if (r.result == -1) return 0;

  // Accepted: the request named a row. The shim's decoder must take the reply, with
  // the application's pointers replaced by buffers of the sizes the request claimed.
  RequestHeader h;
  memcpy(&h, data, sizeof h);
  const Row* row = rowById(h.call);
  if (row == nullptr) __builtin_trap();
  int64_t args[6];
  memcpy(args, h.args, sizeof args);
  for (uint8_t i = 0; i < row->nargs; ++i) {
    const ArgSpec& s = row->args[i];
    if (!isOutput(s.kind) || args[i] == 0) continue;
    const uint64_t need = s.kind == Arg::OutBuf ? static_cast<uint64_t>(args[s.lenArg]) : s.size;
    outputs[i].resize(need + 1);
    args[i] = static_cast<int64_t>(reinterpret_cast<intptr_t>(outputs[i].data()));
  }
  int32_t error = -1;
  if (decodeReply(*row, args, h.seq, reply.begin(), reply.size(), &error) != 0 || error != 0)
    __builtin_trap();
  if (reply.size() > replyCapacity(*row, args)) __builtin_trap();
  return 0;
}
