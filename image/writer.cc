// See writer.h.
#include "image/writer.h"

#include "image/image.capnp.h"
#include "image/section_codec.h"

#include <algorithm>
#include <cstring>
#include <capnp/serialize.h>
#include <kj/debug.h>

namespace mig::image {

ImageWriter::ImageWriter(ByteSink& sink, capnp::MessageBuilder& header) : sink_(&sink) {
  Preamble p = makePreamble();
  put(&p, sizeof(p));
  section(SectionType::header, header);
}

void ImageWriter::put(const void* bytes, size_t len) {
  sink_->write(bytes, len);
  offset_ += len;
}

void ImageWriter::writeFrameAndMeta(SectionType type, kj::ArrayPtr<const kj::byte> bytes,
                                    uint64_t dataLen) {
  KJ_REQUIRE(!inData_, "previous section's data is not finished");
  KJ_REQUIRE(!finished_, "image already finished");
  KJ_REQUIRE(bytes.size() <= kMaxMetaBytes, "section metadata too large", bytes.size());
  SectionFrame f = makeFrame(type, nextIndex_++, bytes.size(), dataLen,
                             checksum(bytes.begin(), bytes.size()));
  // Frame, metadata and the padding up to the data in one write: a file sink makes
  // one system call of them, not three.
  const uint64_t end = offset_ + sizeof(f) + bytes.size();
  const uint64_t padded = dataLen > 0 ? alignUp(end, kDataAlign) : end;
  auto head = kj::heapArray<kj::byte>(static_cast<size_t>(padded - offset_));
  memcpy(head.begin(), &f, sizeof(f));
  memcpy(head.begin() + sizeof(f), bytes.begin(), bytes.size());
  memset(head.begin() + sizeof(f) + bytes.size(), 0, static_cast<size_t>(padded - end));
  put(head.begin(), head.size());
}

void ImageWriter::section(SectionType type, capnp::MessageBuilder& meta) {
  beginData(type, meta, 0);
}

void ImageWriter::beginData(SectionType type, capnp::MessageBuilder& meta, uint64_t dataLen) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(meta);
  if (held_ != nullptr) {
    KJ_REQUIRE(!inData_, "previous section's data is not finished");
    held_->sections_.add(HeldSections::Held{type, kj::mv(words), dataLen, {}});
  } else {
    writeFrameAndMeta(type, words.asBytes(), dataLen);  // padded up to the data's alignment
  }
  startData(dataLen);
}

void ImageWriter::startData(uint64_t dataLen) {
  if (dataLen == 0) return;
  inData_ = true;
  dataLeft_ = dataLen;
  dataBytes_ += dataLen;
  dataHash_.reset();
}

void ImageWriter::data(const void* bytes, size_t len) {
  KJ_REQUIRE(inData_ && len <= dataLeft_, "more data than the section announced");
  dataLeft_ -= len;
  if (held_ != nullptr) {
    held_->sections_.back().data.addAll(static_cast<const kj::byte*>(bytes), static_cast<const kj::byte*>(bytes) + len);
    return;
  }
  dataHash_.update(bytes, len);
  put(bytes, len);
}

void ImageWriter::write(const HeldSections& held) {
  KJ_REQUIRE(held_ == nullptr, "a writer that holds its sections cannot write held ones");
  for (const HeldSections::Held& h : held.sections_) {
    writeFrameAndMeta(h.type, h.meta.asBytes(), h.dataLen);
    startData(h.dataLen);
    if (h.dataLen > 0) data(h.data.begin(), h.data.size());
    endData();
  }
}

void ImageWriter::endData() {
  if (!inData_) return;  // a data section announced with length 0
  KJ_REQUIRE(dataLeft_ == 0, "less data than the section announced", dataLeft_);
  if (held_ != nullptr) {
    inData_ = false;
    return;
  }
  // The padding to the trailer's alignment and the trailer, in one write.
  kj::byte tail[8 + sizeof(DataTrailer)] = {};
  const size_t padLen = static_cast<size_t>(alignUp(offset_, 8) - offset_);
  DataTrailer t = makeTrailer(dataHash_.digest());
  memcpy(tail + padLen, &t, sizeof(t));
  put(tail, padLen + sizeof(t));
  inData_ = false;
}

void ImageWriter::finish() {
  KJ_REQUIRE(held_ == nullptr, "held sections are not an image");
  capnp::MallocMessageBuilder end;
  auto e = end.initRoot<schema::End>();
  e.setSections(nextIndex_);
  e.setDataBytes(dataBytes_);
  section(SectionType::end, end);
  finished_ = true;
}

}  // namespace mig::image
