// Streams an image to a ByteSink without seeking: header first, then sections,
// then End. Page data is written piecewise (a checkpoint copies it straight from
// the process's memory) and checksummed on the way.
#pragma once

#include "image/byte_io.h"
#include "image/checksum.h"
#include "image/format.h"

#include <capnp/message.h>
#include <kj/vector.h>

namespace mig::image {

// Sections taken now and written into an image later (ImageWriter::write): a tree's
// concurrent checkpoint takes every member's state while the tree is frozen, and
// writes each one after the memory of the member before it, once the tree runs.
class HeldSections {
 private:
  friend class ImageWriter;
  struct Held {
    SectionType type;
    kj::Array<capnp::word> meta;
    uint64_t dataLen;
    kj::Vector<kj::byte> data;
  };
  kj::Vector<Held> sections_;
};

class ImageWriter {
 public:
  // Writes the preamble and the header section.
  ImageWriter(ByteSink& sink, capnp::MessageBuilder& header);
  // Keeps what it is given in `into` instead (no preamble, no header, no finish).
  explicit ImageWriter(HeldSections& into) : held_(&into) {}

  // The sections `held` keeps, as if they were written now.
  void write(const HeldSections& held);

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
  void writeFrameAndMeta(SectionType type, kj::ArrayPtr<const kj::byte> meta, uint64_t dataLen);
  void startData(uint64_t dataLen);
  void put(const void* bytes, size_t len);

  ByteSink* sink_ = nullptr;
  HeldSections* held_ = nullptr;
  uint64_t offset_ = 0;
  uint32_t nextIndex_ = 0;
  uint64_t dataBytes_ = 0;  // sum of data lengths, recorded in End
  uint64_t dataLeft_ = 0;   // of the section being written
  bool inData_ = false;
  bool finished_ = false;
  Checksummer dataHash_;
};

}  // namespace mig::image
