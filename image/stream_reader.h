// Reads an image front to back from a ByteSource (a socket, a pipe or a file),
// never seeking, checking every frame, metadata and data checksum as it goes.
// Any defect throws a kj::Exception whose description names the section.
#pragma once

#include "image/byte_io.h"
#include "image/checksum.h"
#include "image/image.capnp.h"
#include "image/section_codec.h"

namespace mig::image {

class StreamReader {
 public:
  // Reads the preamble and the header section.
  explicit StreamReader(ByteSource& source);

  schema::Header::Reader header() { return header_->getRoot<schema::Header>(); }

  // Moves to the next section, first reading (and checking) whatever data of the
  // current one was not read. Returns nullptr once End has been read and checked.
  const SectionInfo* next();

  // Metadata of the current section.
  template <typename T>
  typename T::Reader meta() { return meta_->getRoot<T>(); }

  // Reads up to `len` bytes of the current section's data; 0 once all was read.
  // The data checksum is checked when the last byte has been read.
  size_t readData(void* buf, size_t len);

  uint64_t offset() const { return offset_; }

 private:
  size_t readSome(void* buf, size_t len);
  void skipPadding(uint64_t toOffset);
  void loadSection(SectionInfo& info, kj::Array<capnp::word>& words,
                   kj::Own<capnp::FlatArrayMessageReader>& reader);
  void finishData();

  ByteSource& source_;
  uint64_t offset_ = 0;
  uint32_t nextIndex_ = 0;
  uint64_t dataBytes_ = 0;
  bool ended_ = false;

  SectionInfo headerInfo_{};
  kj::Array<capnp::word> headerWords_;
  kj::Own<capnp::FlatArrayMessageReader> header_;

  SectionInfo current_{};
  kj::Array<capnp::word> words_;
  kj::Own<capnp::FlatArrayMessageReader> meta_;
  uint64_t dataLeft_ = 0;
  bool inData_ = false;
  Checksummer dataHash_;
};

}  // namespace mig::image
