// See section_codec.h.
#include "image/section_codec.h"

#include "image/checksum.h"
#include "image/image_error.h"
#include "image/section_check.h"

#include <cstring>

namespace mig::image {

kj::String SectionInfo::describe() const { return describeSection(index, type, layout.frameOffset); }

Preamble makePreamble() {
  Preamble p{};
  memcpy(p.magic, kMagic, sizeof(kMagic));
  p.version = kFormatVersion;
  p.machine = kMachineX86_64;
  return p;
}

void checkPreamble(const Preamble& p, size_t got) {
  if (got < sizeof(Preamble)) {
    if (got >= sizeof(kMagic) && memcmp(p.magic, kMagic, sizeof(kMagic)) != 0) {
      fail(kj::str("not a mig image (wrong magic bytes at the start)"));
    }
    fail(kj::str("image truncated: ", got, " bytes, shorter than the 16-byte preamble"));
  }
  if (memcmp(p.magic, kMagic, sizeof(kMagic)) != 0) {
    fail(kj::str("not a mig image (wrong magic bytes at the start)"));
  }
  if (p.version < kOldestFormatVersion || p.version > kFormatVersion) {
    fail(kj::str("image format version ", p.version, " is not supported (this mig reads versions ",
                 kOldestFormatVersion, " to ", kFormatVersion, "); use the mig that wrote it"));
  }
  if (p.machine != kMachineX86_64) {
    fail(kj::str("image was made on another architecture (ELF machine ", p.machine,
                 "); this host is x86_64"));
  }
}

namespace {

uint64_t frameHashOf(const SectionFrame& f) {
  return checksum(&f, offsetof(SectionFrame, frameHash));
}

}  // namespace

SectionFrame makeFrame(SectionType type, uint32_t index, uint32_t metaLen, uint64_t dataLen,
                       uint64_t metaHash) {
  SectionFrame f{};
  f.tag = kSectionTag;
  f.type = static_cast<uint16_t>(type);
  f.index = index;
  f.metaLen = metaLen;
  f.dataLen = dataLen;
  f.metaHash = metaHash;
  f.frameHash = frameHashOf(f);
  return f;
}

SectionInfo decodeFrame(const SectionFrame& f, size_t got, uint64_t offset,
                        uint32_t expectedIndex) {
  kj::String where = kj::str("section ", expectedIndex, " at byte ", offset);
  if (got == 0) {
    fail(kj::str("image truncated: it ends before ", where, " (no end section)"));
  }
  if (got < sizeof(SectionFrame)) {
    fail(kj::str("image truncated: ", where, " is cut inside its frame (", got, " of ",
                 sizeof(SectionFrame), " bytes)"));
  }
  if (f.tag != kSectionTag) fail(kj::str(where, ": no section frame here (corrupt image)"));
  if (frameHashOf(f) != f.frameHash) {
    fail(kj::str(where, ": frame checksum mismatch (corrupt image)"));
  }
  SectionInfo info{};
  info.index = f.index;
  info.type = f.type;
  info.metaLen = f.metaLen;
  info.dataLen = f.dataLen;
  info.metaHash = f.metaHash;
  kj::String name = describeSection(expectedIndex, f.type, offset);
  if (f.index != expectedIndex) {
    fail(kj::str(name, ": carries number ", f.index, " (a section is missing or repeated)"));
  }
  if (f.flags != 0 || f.reserved != 0) fail(kj::str(name, ": reserved frame fields are set"));
  if (f.metaLen % 8 != 0 || f.metaLen < 8) {
    fail(kj::str(name, ": metadata length ", f.metaLen, " is not a positive multiple of 8"));
  }
  if (f.metaLen > kMaxMetaBytes) {
    fail(kj::str(name, ": metadata length ", f.metaLen, " exceeds the limit of ", kMaxMetaBytes,
                 " bytes"));
  }
  if (f.dataLen > kMaxDataBytes) {
    fail(kj::str(name, ": data length ", f.dataLen, " exceeds the limit of ", kMaxDataBytes,
                 " bytes"));
  }
  if (expectedIndex == 0 && f.type != static_cast<uint16_t>(SectionType::header)) {
    fail(kj::str(name, ": the first section must be the header"));
  }
  if (expectedIndex != 0 && f.type == static_cast<uint16_t>(SectionType::header)) {
    fail(kj::str(name, ": a second header section"));
  }
  info.layout = SectionLayout::of(offset, f.metaLen, f.dataLen);
  return info;
}

kj::Own<capnp::FlatArrayMessageReader> decodeMeta(const SectionInfo& info,
                                                  kj::ArrayPtr<const capnp::word> words) {
  if (checksum(words.begin(), words.size() * sizeof(capnp::word)) != info.metaHash) {
    fail(kj::str(info.describe(), ": metadata checksum mismatch (corrupt image)"));
  }
  capnp::ReaderOptions options;
  // Bounds the work a hostile message can cause (pointers that alias each other).
  options.traversalLimitInWords = words.size() * 64 + 1024;
  options.nestingLimit = 16;
  kj::Own<capnp::FlatArrayMessageReader> reader;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    reader = kj::heap<capnp::FlatArrayMessageReader>(words, options);
    if (reader->getEnd() != words.end()) {
      fail(kj::str("bytes after the end of the message"));
    }
    checkSectionMeta(info, *reader);
  })) {
    fail(kj::str(info.describe(), ": invalid metadata: ", e->getDescription()));
  }
  return reader;
}

DataTrailer makeTrailer(uint64_t dataHash) { return DataTrailer{kTrailerTag, dataHash}; }

void checkTrailer(const SectionInfo& info, const DataTrailer& t, size_t got, uint64_t dataHash) {
  if (got < sizeof(DataTrailer)) {
    fail(kj::str("image truncated: ", info.describe(), " is cut inside its data trailer"));
  }
  if (t.tag != kTrailerTag) fail(kj::str(info.describe(), ": data trailer is corrupt"));
  if (t.dataHash != dataHash) {
    fail(kj::str(info.describe(), ": data checksum mismatch (corrupt image)"));
  }
}

void checkPadding(const SectionInfo& info, const kj::byte* pad, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    if (pad[i] != 0) fail(kj::str(info.describe(), ": non-zero padding (corrupt image)"));
  }
}

}  // namespace mig::image
