// The bytes of one home stream pushed ahead to the job's host and not yet read by it
// (pushed_reads.h), and how the job's reads are answered from them: in order, each
// byte once, the stream's end (read returns 0) or its failure (ECONNRESET) only after
// the last byte before it, the failure once and then the end, as the kernel gives it.
// Offsets are the deputy's (Deputy.peek): what `add` is given names where its bytes
// start, so a peek answered twice (sent again after a broken link) adds nothing twice.
#pragma once

#include "rsc/wire.h"

#include <kj/array.h>
#include <kj/common.h>

#include <cstdint>
#include <deque>

namespace mig::shadow {

class PushBuffer {
 public:
  // Where the stream is when pushing starts (the first peek's offset).
  void start(uint64_t at) {
    end_ = at;
    started_ = true;
  }
  bool started() const { return started_; }

  // Bytes of the stream from offset `at`: the part past what is here already is kept.
  // False (nothing kept) when they start past it: a gap, which the deputy never makes.
  bool add(uint64_t at, kj::ArrayPtr<const kj::byte> bytes);
  // The stream ends after the bytes here: `error` 0 for its end, else its errno.
  void end(int32_t error);

  // Whether a read would be answered now (bytes, or the end).
  bool readable() const { return size_ > 0 || ended_; }
  bool ended() const { return ended_; }
  uint64_t size() const { return size_; }
  uint64_t endOffset() const { return end_; }  // the offset after the last byte added

  // Answers `request` (a read(2), rsc/wire.h, of a buffer of args[2] bytes) from what
  // is here; `readable()` must be true. `taken` is set to the bytes it gave (0 for the
  // end or the failure).
  kj::Array<kj::byte> read(const rsc::RequestHeader& request, uint64_t& taken);

 private:
  std::deque<kj::Array<kj::byte>> chunks_;  // as they came; the first one from front_ on
  size_t front_ = 0;
  uint64_t size_ = 0;
  uint64_t end_ = 0;
  bool started_ = false;
  bool ended_ = false;
  int32_t error_ = 0;  // given once, then the end
};

}  // namespace mig::shadow
