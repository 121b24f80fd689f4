// See stream_reader.h.
#include "image/stream_reader.h"

#include "image/image_error.h"

#include <algorithm>

namespace mig::image {

StreamReader::StreamReader(ByteSource& source) : source_(source) {
  Preamble p{};
  checkPreamble(p, readSome(&p, sizeof(p)));
  loadSection(headerInfo_, headerWords_, header_);
}

size_t StreamReader::readSome(void* buf, size_t len) {
  size_t got = source_.read(buf, len);
  offset_ += got;
  return got;
}

void StreamReader::loadSection(SectionInfo& info, kj::Array<capnp::word>& words,
                               kj::Own<capnp::FlatArrayMessageReader>& reader) {
  SectionFrame f{};
  uint64_t at = offset_;
  info = decodeFrame(f, readSome(&f, sizeof(f)), at, nextIndex_);
  ++nextIndex_;
  if (nextIndex_ > kMaxSections) fail(kj::str(info.describe(), ": too many sections"));
  words = kj::heapArray<capnp::word>(info.metaLen / sizeof(capnp::word));
  size_t got = readSome(words.begin(), info.metaLen);
  if (got < info.metaLen) {
    fail(kj::str("image truncated: ", info.describe(), " is cut inside its metadata (", got,
                 " of ", info.metaLen, " bytes)"));
  }
  reader = decodeMeta(info, words);
}

void StreamReader::skipPadding(uint64_t toOffset) {
  kj::byte pad[kDataAlign];
  while (offset_ < toOffset) {
    size_t want = std::min<uint64_t>(toOffset - offset_, sizeof(pad));
    size_t got = readSome(pad, want);
    if (got < want) fail(kj::str("image truncated: ", current_.describe(), " is cut in its padding"));
    checkPadding(current_, pad, got);
  }
}

const SectionInfo* StreamReader::next() {
  if (ended_) return nullptr;
  finishData();
  loadSection(current_, words_, meta_);
  if (current_.type == static_cast<uint16_t>(SectionType::end)) {
    auto end = meta<schema::End>();
    if (end.getSections() != current_.index || end.getDataBytes() != dataBytes_) {
      fail(kj::str(current_.describe(), ": image lists ", end.getSections(), " sections and ",
                   end.getDataBytes(), " data bytes but holds ", current_.index, " and ",
                   dataBytes_, " (corrupt image)"));
    }
    ended_ = true;
    return nullptr;
  }
  if (current_.dataLen > 0) {
    skipPadding(current_.layout.dataOffset);
    inData_ = true;
    dataLeft_ = current_.dataLen;
    dataBytes_ += current_.dataLen;
    dataHash_.reset();
  }
  return &current_;
}

size_t StreamReader::readData(void* buf, size_t len) {
  if (!inData_ || dataLeft_ == 0) return 0;
  size_t want = std::min<uint64_t>(len, dataLeft_);
  size_t got = readSome(buf, want);
  dataHash_.update(buf, got);
  dataLeft_ -= got;
  if (got < want) {
    fail(kj::str("image truncated: ", current_.describe(), " is cut inside its data (",
                 current_.dataLen - dataLeft_, " of ", current_.dataLen, " bytes)"));
  }
  if (dataLeft_ == 0) {
    skipPadding(current_.layout.trailerOffset);
    DataTrailer t{};
    checkTrailer(current_, t, readSome(&t, sizeof(t)), dataHash_.digest());
  }
  return got;
}

void StreamReader::finishData() {
  kj::byte buf[64 << 10];
  while (inData_ && dataLeft_ > 0) readData(buf, sizeof(buf));
  inData_ = false;
}

}  // namespace mig::image
