// Encoding and checking of the framing pieces (preamble, section frame, metadata,
// data trailer) shared by the writer and both readers, so the rules about what a
// valid image is live in one place.
#pragma once

#include "image/format.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>
#include <kj/memory.h>
#include <kj/string.h>

namespace mig::image {

// A section as found in an image, after its frame was checked.
struct SectionInfo {
  uint32_t index;
  uint16_t type;
  uint32_t metaLen;
  uint64_t dataLen;
  uint64_t metaHash;
  SectionLayout layout;

  kj::String describe() const;  // "section 3 (pages) at byte 8192"
};

Preamble makePreamble();
// `got` is how many bytes were actually available (a short read means truncation).
void checkPreamble(const Preamble& p, size_t got);

SectionFrame makeFrame(SectionType type, uint32_t index, uint32_t metaLen, uint64_t dataLen,
                       uint64_t metaHash);
SectionInfo decodeFrame(const SectionFrame& f, size_t got, uint64_t offset,
                        uint32_t expectedIndex);

// Checks the metadata checksum, parses the Cap'n Proto message and checks what the
// section's type requires of it. `words` must hold exactly info.metaLen bytes and
// must outlive the returned reader.
kj::Own<capnp::FlatArrayMessageReader> decodeMeta(const SectionInfo& info,
                                                  kj::ArrayPtr<const capnp::word> words);

DataTrailer makeTrailer(uint64_t dataHash);
void checkTrailer(const SectionInfo& info, const DataTrailer& t, size_t got, uint64_t dataHash);

// Padding must be zero: a flipped byte anywhere in an image is reported.
void checkPadding(const SectionInfo& info, const kj::byte* pad, size_t len);

}  // namespace mig::image
