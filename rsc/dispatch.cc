// rsc/dispatch.cc: the deputy's dispatcher (see dispatch.h). It trusts nothing in a
// request: every length is checked against the table row before any byte is used,
// and the row, not the request, decides which function runs and with which ioctl
// request or fcntl command.
#include "rsc/dispatch.h"

#include "rsc/call_policy.h"
#include "rsc/file_identity.h"
#include "rsc/forward_table.h"
#include "rsc/payload.h"
#include "rsc/wire.h"

#include <dlfcn.h>
#include <errno.h>
#include <ffi.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <memory>

namespace mig::rsc {

struct Dispatcher::Prepared {
  void* function = nullptr;  // nullptr: not in this libc, the row answers ENOSYS
  ffi_cif cif;
  ffi_type* types[7];        // Fixup::RawSyscall: the system call number first
};

namespace {

bool isPointer(Arg k) { return k != Arg::None && k != Arg::Int && k != Arg::Fd; }

uint64_t boundedStrlen(const uint8_t* s, uint64_t limit) {
  uint64_t n = 0;
  while (n < limit && s[n] != 0) ++n;
  return n;
}

void putHeader(kj::byte* at, uint64_t length, uint64_t seq, int64_t result, int32_t error) {
  ReplyHeader h;
  h.magic = kReplyMagic;
  h.length = static_cast<uint32_t>(length);
  h.seq = seq;
  h.result = result;
  h.error = error;
  h.flags = 0;
  memcpy(at, &h, sizeof h);
}

// Replies are built in place at their largest size and then trimmed: the returned
// Array covers the front of the allocation and frees all of it.
class FrontDisposer final : public kj::ArrayDisposer {
  void disposeImpl(void* first, size_t, size_t, size_t, void (*)(void*)) const override {
    delete[] static_cast<kj::byte*>(first);
  }
};
const FrontDisposer kFrontDisposer;

kj::Array<kj::byte> errorReply(uint64_t seq, int32_t error) {
  auto reply = kj::heapArray<kj::byte>(sizeof(ReplyHeader));
  putHeader(reply.begin(), reply.size(), seq, -1, error);
  return reply;
}

// A request taken apart and checked against its row.
struct Request {
  RequestHeader h;
  const Row* row;
  const uint8_t* input[6];  // input payload bytes, nullptr for a NULL pointer
};

// Fills r from msg; returns 0, or the errno that answers a malformed request.
int parse(const Table& table, kj::ArrayPtr<const kj::byte> msg, Request& r) {
  if (msg.size() < sizeof(RequestHeader) || msg.size() > kMaxMessage) return EPROTO;
  memcpy(&r.h, msg.begin(), sizeof r.h);
  if (r.h.magic != kRequestMagic || r.h.length != msg.size()) return EPROTO;
  if ((r.h.flags & ~(kNoReply | kNoTtin | kFailureSeen)) != 0) return EPROTO;
  r.row = table.byId(r.h.call);
  if (r.row == nullptr) return ENOSYS;
  const Row& row = *r.row;
  if ((r.h.flags & kNoReply) != 0 && !mayComePipelined(row)) return EPROTO;
  const int64_t* args = r.h.args;
  // The row was chosen by the sender; an ioctl row must not carry another request.
  if (row.selectorArg >= 0 && static_cast<uint32_t>(args[row.selectorArg]) != row.selector)
    return EPROTO;

  const uint8_t* p = msg.begin();
  const uint64_t end = msg.size();
  uint64_t off = sizeof(RequestHeader);
  for (uint8_t i = 0; i < row.nargs; ++i) {
    r.input[i] = nullptr;
    const ArgSpec& s = row.args[i];
    if (s.kind == Arg::OutBuf && static_cast<uint64_t>(args[s.lenArg]) > kMaxIo) return EPROTO;
    if (!isInput(s.kind)) continue;

    if (end - off < kPayloadHeader) return EPROTO;
    const uint64_t count = loadU64(p + off);
    const uint8_t* data = p + off + kPayloadHeader;
    // Bound the count by the row before any arithmetic with it.
    switch (s.kind) {
      case Arg::InBuf:
        if (count != static_cast<uint64_t>(args[s.lenArg]) || count > kMaxIo) return EPROTO;
        break;
      case Arg::Path:
        if (count != kNullPayload && (count == 0 || count > kMaxPath)) return EPROTO;
        break;
      default:  // structs
        if (count != kNullPayload && count != s.size) return EPROTO;
        break;
    }
    const uint64_t size = payloadSize(count);
    if (size > end - off) return EPROTO;
    if (count != kNullPayload) {
      if (s.kind == Arg::Path && boundedStrlen(data, count) != count - 1) return EPROTO;
      if (!allZero(data + count, size - kPayloadHeader - count)) return EPROTO;
      r.input[i] = data;
    }
    off += size;
  }
  return off == end ? 0 : EPROTO;
}

// Where each output argument's bytes go in the reply while the call runs: at the
// position of the largest payload it can have. Unused space is squeezed out after.
struct OutputLayout {
  uint64_t dataOffset[6];
  uint64_t total;
};

OutputLayout layOut(const Request& r) {
  OutputLayout l{};
  uint64_t off = sizeof(ReplyHeader);
  for (uint8_t i = 0; i < r.row->nargs; ++i) {
    const ArgSpec& s = r.row->args[i];
    if (!isOutput(s.kind)) continue;
    l.dataOffset[i] = off + kPayloadHeader;
    uint64_t most = s.kind == Arg::OutBuf ? static_cast<uint64_t>(r.h.args[s.lenArg]) : s.size;
    if (r.h.args[i] == 0) most = 0;  // the application passed NULL: nothing comes back
    off += kPayloadHeader + pad8(most);
  }
  l.total = off;
  return l;
}

// The byte count of output argument i after the call; the shim's decodeReply
// expects exactly this (marshal.cc).
uint64_t outCount(const Request& r, uint8_t i, int64_t result) {
  const ArgSpec& s = r.row->args[i];
  const bool null = r.h.args[i] == 0;
  if (result < 0) return 0;
  if (s.kind == Arg::OutBuf) {
    const auto len = static_cast<uint64_t>(r.h.args[s.lenArg]);
    return null ? 0 : (static_cast<uint64_t>(result) < len ? static_cast<uint64_t>(result) : len);
  }
  return null ? kNullPayload : s.size;
}

// A pipelined write has nobody to report a short write (or EAGAIN on a non-blocking
// fd) to, and the bytes after it must not overtake it: write the rest (a pwrite64's
// at its offset: `offset` >= 0), waiting for room. A file that is full says so on the
// next write (ENOSPC), which is the error. Returns the whole count, or -1 with *error set.
int64_t finishPipelinedWrite(int fd, const uint8_t* data, uint64_t count, int64_t offset, int64_t done,
                             int32_t* error) {
  uint64_t written = done > 0 ? static_cast<uint64_t>(done) : 0;
  if (done < 0 && *error != EAGAIN && *error != EINTR) return -1;
  while (written < count) {
    ssize_t n = offset < 0 ? write(fd, data + written, count - written)
                           : pwrite(fd, data + written, count - written, offset + static_cast<int64_t>(written));
    if (n > 0) {
      written += static_cast<uint64_t>(n);
    } else if (n < 0 && errno == EAGAIN) {
      struct pollfd p = {fd, POLLOUT, 0};
      poll(&p, 1, -1);
    } else if (n == 0 || errno != EINTR) {
      *error = n == 0 ? EIO : errno;
      return -1;
    }
  }
  *error = 0;
  return static_cast<int64_t>(count);
}

}  // namespace

Dispatcher::Dispatcher(bool execute, const Table& table)
    : table_(table), prepared_(kj::heapArray<Prepared>(table.count)), execute_(execute) {
  if (!execute_) return;  // a validating-only dispatcher never even looks functions up
  for (uint32_t index = 0; index < table.count; ++index) {
    const Row& row = table.rows[index];
    Prepared& p = prepared_[index];
    const bool raw = row.fixup == Fixup::RawSyscall;
    ffi_type** types = raw ? p.types + 1 : p.types;
    p.types[0] = &ffi_type_sint64;
    for (uint8_t i = 0; i < row.nargs; ++i)
      types[i] = isPointer(row.args[i].kind) ? &ffi_type_pointer : &ffi_type_sint64;
    ffi_type* ret = row.ret == Ret::Long  ? &ffi_type_sint64
                    : row.ret == Ret::Int ? &ffi_type_sint32
                                          : &ffi_type_pointer;
    ffi_status status =
        raw            ? ffi_prep_cif_var(&p.cif, FFI_DEFAULT_ABI, 1, row.nargs + 1, ret, p.types)
        : row.variadic ? ffi_prep_cif_var(&p.cif, FFI_DEFAULT_ABI, row.fixedArgs, row.nargs, ret, p.types)
                       : ffi_prep_cif(&p.cif, FFI_DEFAULT_ABI, row.nargs, ret, p.types);
    if (status != FFI_OK) continue;
    p.function = raw ? nullptr : ownFunction(row.function);  // mig's own (file_identity.cc)
    if (p.function == nullptr) p.function = dlsym(RTLD_DEFAULT, raw ? "syscall" : row.function);
  }
}

Dispatcher::~Dispatcher() = default;

kj::Array<kj::byte> Dispatcher::call(kj::ArrayPtr<const kj::byte> request) {
  Request r;
  if (int error = parse(table_, request, r); error != 0) {
    uint64_t seq = 0;  // echo the sequence number whenever there is one to echo
    if (request.size() >= sizeof(RequestHeader)) memcpy(&seq, request.begin() + 8, sizeof seq);
    return errorReply(seq, error);
  }
  const Row& row = *r.row;
  if (isOwn_ != nullptr) {
    if ((row.sysno == SYS_dup3 || row.sysno == SYS_dup2) && isOwn_(r.h.args[1])) return errorReply(r.h.seq, EMFILE);
    if (row.sysno == SYS_close && isOwn_(r.h.args[0])) return errorReply(r.h.seq, EBADF);
  }
  const OutputLayout layout = layOut(r);
  if (layout.total > kMaxMessage) return errorReply(r.h.seq, EPROTO);

  // Output arguments are written straight into the reply, so a read costs no copy.
  std::unique_ptr<kj::byte[]> reply(new kj::byte[layout.total]);
  int64_t ints[6] = {};
  void* pointers[6] = {};
  int64_t sysno = row.sysno;
  void* allValues[7] = {&sysno};
  void** values = row.fixup == Fixup::RawSyscall ? allValues + 1 : allValues;
  for (uint8_t i = 0; i < row.nargs; ++i) {
    const ArgSpec& s = row.args[i];
    values[i] = isPointer(s.kind) ? static_cast<void*>(&pointers[i]) : static_cast<void*>(&ints[i]);
    if (s.kind == Arg::Int || s.kind == Arg::Fd) ints[i] = r.h.args[i];
    if (isOutput(s.kind) && r.h.args[i] != 0) {
      kj::byte* at = reply.get() + layout.dataOffset[i];
      // Struct bytes the call leaves alone must not carry old heap contents home.
      if (isStruct(s.kind)) memset(at, 0, s.size);
      if (s.kind == Arg::InOutStruct && r.input[i] != nullptr) memcpy(at, r.input[i], s.size);
      pointers[i] = at;
    } else if (isInput(s.kind)) {
      // The functions only read these (write's buffer, paths, TCSETS's termios). An
      // empty buffer is NULL, as the application passed it (sendto's address).
      const bool empty = s.kind == Arg::InBuf && r.h.args[s.lenArg] == 0;
      pointers[i] = empty ? nullptr : const_cast<uint8_t*>(r.input[i]);
    }
  }
  if (row.selectorArg >= 0) ints[row.selectorArg] = row.selector;

  int64_t result = 0;
  int32_t error = 0;
  if (execute_) {
    const Prepared& p = prepared_[static_cast<uint32_t>(row.id) - 1];
    const bool cwd = row.fixup == Fixup::CwdLength;
    if (p.function == nullptr) {
      result = -1;
      error = ENOSYS;
    } else if (cwd && (pointers[0] == nullptr || ints[row.args[0].lenArg] == 0)) {
      // glibc's getcwd would allocate for NULL and says EINVAL for size 0; the
      // system call says EFAULT and ERANGE.
      result = -1;
      error = pointers[0] == nullptr ? EFAULT : ERANGE;
    } else {
      union {
        ffi_arg integer;
        void* pointer;
      } rv{};
      errno = 0;
      ffi_call(const_cast<ffi_cif*>(&p.cif), FFI_FN(p.function), &rv, allValues);
      const int saved = errno;
      switch (row.ret) {
        case Ret::Long: result = static_cast<int64_t>(rv.integer); break;
        case Ret::Int: result = static_cast<int32_t>(rv.integer); break;
        case Ret::Pointer:  // CwdLength, the one pointer-returning row (tableIsSound)
          result = rv.pointer == nullptr
                       ? -1
                       : static_cast<int64_t>(
                             boundedStrlen(static_cast<const uint8_t*>(pointers[0]),
                                           static_cast<uint64_t>(ints[row.args[0].lenArg])) + 1);
          break;
      }
      if (result < 0) {
        result = -1;
        error = saved > 0 && saved < 4096 ? saved : EIO;
      }
      if ((r.h.flags & kNoReply) != 0) {
        result = finishPipelinedWrite(static_cast<int>(ints[0]), r.input[1], static_cast<uint64_t>(ints[2]),
                                      row.has(kPositioned) ? ints[3] : -1, result, &error);
      }
    }
  }
  if (result >= 0 && (r.h.flags & kNoReply) != 0) return nullptr;

  // Squeeze each payload down to its real size; data only ever moves towards the front.
  uint64_t w = sizeof(ReplyHeader);
  for (uint8_t i = 0; i < row.nargs; ++i) {
    if (!isOutput(row.args[i].kind)) continue;
    const uint64_t count = outCount(r, i, result);
    storeU64(reply.get() + w, count);
    const uint64_t bytes = count == kNullPayload ? 0 : count;
    if (bytes != 0 && w + kPayloadHeader != layout.dataOffset[i])
      memmove(reply.get() + w + kPayloadHeader, reply.get() + layout.dataOffset[i], bytes);
    memset(reply.get() + w + kPayloadHeader + bytes, 0, pad8(bytes) - bytes);
    w += kPayloadHeader + pad8(bytes);
  }
  putHeader(reply.get(), w, r.h.seq, result, error);
  return kj::Array<kj::byte>(reply.release(), w, kFrontDisposer);
}

}  // namespace mig::rsc
