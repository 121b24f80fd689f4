// See stream_verifier.h.
#include "image/stream_verifier.h"

#include "image/image_error.h"

#include <algorithm>
#include <cstring>

namespace mig::image {

void StreamVerifier::enter(State s, uint64_t need) {
  state_ = s;
  need_ = need;
  buf_.clear();
}

void StreamVerifier::feed(const void* bytes, size_t len) {
  auto* p = static_cast<const kj::byte*>(bytes);
  while (len > 0) {
    if (state_ == State::done) fail(kj::str("bytes after the end section of the image"));
    size_t n = static_cast<size_t>(std::min<uint64_t>(len, need_));
    switch (state_) {
      case State::pad:
      case State::dataPad: checkPadding(info_, p, n); break;
      case State::data: hash_.update(p, n); break;
      default: buf_.addAll(p, p + n); break;
    }
    p += n;
    len -= n;
    offset_ += n;
    need_ -= n;
    if (need_ == 0) finishPiece();
  }
}

void StreamVerifier::finishPiece() {
  switch (state_) {
    case State::preamble: {
      Preamble pre{};
      memcpy(&pre, buf_.begin(), sizeof(pre));
      checkPreamble(pre, sizeof(pre));
      return enter(State::frame, sizeof(SectionFrame));
    }
    case State::frame: {
      SectionFrame f{};
      memcpy(&f, buf_.begin(), sizeof(f));
      info_ = decodeFrame(f, sizeof(f), offset_ - sizeof(f), index_++);
      return enter(State::meta, info_.metaLen);
    }
    case State::meta: {
      auto words = kj::heapArray<capnp::word>(info_.metaLen / sizeof(capnp::word));
      memcpy(words.begin(), buf_.begin(), info_.metaLen);
      decodeMeta(info_, words);  // checksum and what the section's type requires
      if (info_.type == static_cast<uint16_t>(SectionType::end)) return enter(State::done, 0);
      if (info_.dataLen == 0) return enter(State::frame, sizeof(SectionFrame));
      hash_.reset();
      enter(State::pad, info_.layout.dataOffset - offset_);
      if (need_ == 0) enter(State::data, info_.dataLen);
      return;
    }
    case State::pad: return enter(State::data, info_.dataLen);
    case State::data:
      enter(State::dataPad, info_.layout.trailerOffset - offset_);
      if (need_ == 0) enter(State::trailer, sizeof(DataTrailer));
      return;
    case State::dataPad: return enter(State::trailer, sizeof(DataTrailer));
    case State::trailer: {
      DataTrailer t{};
      memcpy(&t, buf_.begin(), sizeof(t));
      checkTrailer(info_, t, sizeof(t), hash_.digest());
      return enter(State::frame, sizeof(SectionFrame));
    }
    case State::done: return;
  }
}

}  // namespace mig::image
