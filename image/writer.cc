// See writer.h.
#include "image/writer.h"

#include "image/image.capnp.h"
#include "image/section_codec.h"

#include <algorithm>
#include <capnp/serialize.h>
#include <kj/debug.h>

namespace mig::image {

ImageWriter::ImageWriter(ByteSink& sink, capnp::MessageBuilder& header) : sink_(sink) {
  Preamble p = makePreamble();
  put(&p, sizeof(p));
  section(SectionType::header, header);
}

void ImageWriter::put(const void* bytes, size_t len) {
  sink_.write(bytes, len);
  offset_ += len;
}

void ImageWriter::pad(uint64_t toOffset) {
  static const kj::byte zeros[kDataAlign] = {};
  while (offset_ < toOffset) put(zeros, std::min<uint64_t>(toOffset - offset_, sizeof(zeros)));
}

void ImageWriter::writeFrameAndMeta(SectionType type, capnp::MessageBuilder& meta,
                                    uint64_t dataLen) {
  KJ_REQUIRE(!inData_, "previous section's data is not finished");
  KJ_REQUIRE(!finished_, "image already finished");
  kj::Array<capnp::word> words = capnp::messageToFlatArray(meta);
  auto bytes = words.asBytes();
  KJ_REQUIRE(bytes.size() <= kMaxMetaBytes, "section metadata too large", bytes.size());
  SectionFrame f = makeFrame(type, nextIndex_++, bytes.size(), dataLen,
                             checksum(bytes.begin(), bytes.size()));
  put(&f, sizeof(f));
  put(bytes.begin(), bytes.size());
}

void ImageWriter::section(SectionType type, capnp::MessageBuilder& meta) {
  writeFrameAndMeta(type, meta, 0);
}

void ImageWriter::beginData(SectionType type, capnp::MessageBuilder& meta, uint64_t dataLen) {
  writeFrameAndMeta(type, meta, dataLen);
  if (dataLen == 0) return;
  pad(alignUp(offset_, kDataAlign));
  inData_ = true;
  dataLeft_ = dataLen;
  dataBytes_ += dataLen;
  dataHash_.reset();
}

void ImageWriter::data(const void* bytes, size_t len) {
  KJ_REQUIRE(inData_ && len <= dataLeft_, "more data than the section announced");
  dataHash_.update(bytes, len);
  put(bytes, len);
  dataLeft_ -= len;
}

void ImageWriter::endData() {
  if (!inData_) return;  // a data section announced with length 0
  KJ_REQUIRE(dataLeft_ == 0, "less data than the section announced", dataLeft_);
  pad(alignUp(offset_, 8));
  DataTrailer t = makeTrailer(dataHash_.digest());
  put(&t, sizeof(t));
  inData_ = false;
}

void ImageWriter::finish() {
  capnp::MallocMessageBuilder end;
  auto e = end.initRoot<schema::End>();
  e.setSections(nextIndex_);
  e.setDataBytes(dataBytes_);
  section(SectionType::end, end);
  finished_ = true;
}

}  // namespace mig::image
