// Checks an image as its bytes arrive, in pieces of any size (push, unlike
// StreamReader, which pulls): every frame, metadata, padding and data checksum, as
// FileReader::verifyAll does on a file. A migration's receiver feeds it what it
// spools, so a transfer that went wrong is refused as it happens, and the restart
// need not read the whole image again while the job is frozen (`migctl restart
// --data-verified`).
#pragma once

#include "image/checksum.h"
#include "image/section_codec.h"

#include <kj/vector.h>

#include <cstdint>

namespace mig::image {

class StreamVerifier {
 public:
  // Throws the image error (one line naming the section) at the first bad byte.
  void feed(const void* bytes, size_t len);

  // The End section arrived and every section before it checked out.
  bool complete() const { return state_ == State::done; }
  uint64_t bytesSeen() const { return offset_; }

 private:
  enum class State { preamble, frame, meta, pad, data, dataPad, trailer, done };
  void enter(State s, uint64_t need);
  void finishPiece();

  State state_ = State::preamble;
  uint64_t offset_ = 0;  // bytes fed so far
  uint64_t need_ = sizeof(Preamble);  // bytes left of the current piece
  uint32_t index_ = 0;
  SectionInfo info_{};
  kj::Vector<kj::byte> buf_;  // the current piece when it must be whole (frame, metadata)
  Checksummer hash_;
};

}  // namespace mig::image
