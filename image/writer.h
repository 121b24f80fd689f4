// Streams an image to a ByteSink without seeking: header first, then sections,
// then End. Page data is written piecewise (a checkpoint copies it straight from
// the process's memory) and checksummed on the way.
#pragma once

#include "image/byte_io.h"
#include "image/checksum.h"
#include "image/format.h"

#include <capnp/message.h>

namespace mig::image {

class ImageWriter {
 public:
  // Writes the preamble and the header section.
  ImageWriter(ByteSink& sink, capnp::MessageBuilder& header);

  // A section with metadata only.
  void section(SectionType type, capnp::MessageBuilder& meta);

  // A section with raw data: exactly `dataLen` bytes must follow through data().
  void beginData(SectionType type, capnp::MessageBuilder& meta, uint64_t dataLen);
  void data(const void* bytes, size_t len);
  void endData();

  // Writes the End section. The image is complete only after this.
  void finish();

  uint64_t bytesWritten() const { return offset_; }

 private:
  void writeFrameAndMeta(SectionType type, capnp::MessageBuilder& meta, uint64_t dataLen);
  void put(const void* bytes, size_t len);

  ByteSink& sink_;
  uint64_t offset_ = 0;
  uint32_t nextIndex_ = 0;
  uint64_t dataBytes_ = 0;  // sum of data lengths, recorded in End
  uint64_t dataLeft_ = 0;   // of the section being written
  bool inData_ = false;
  bool finished_ = false;
  Checksummer dataHash_;
};

}  // namespace mig::image
