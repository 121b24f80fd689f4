// The on-disk and on-wire framing of a mig checkpoint image.
//
// An image is a byte stream that can be written without seeking (to a file or
// a socket) and read back either as a stream or, from a file, at random:
//
//   Preamble (16 bytes)
//   then sections, each:
//     SectionFrame (48 bytes)
//     metadata: a Cap'n Proto message (flat, segment table included), metaLen bytes,
//               a multiple of 8
//     if dataLen > 0:
//       zero padding up to the next 4 KiB boundary of the stream offset, so page data
//       can be mmap()ed straight from an image file
//       raw data, dataLen bytes
//       zero padding up to the next 8-byte boundary
//       DataTrailer (16 bytes): the data's checksum, known only once it is written
//
// The first section is the Header, the last is End; a stream without End is
// truncated.
//
// A pre-copy migration streams its pages while the job runs: pages sections with
// precopyRound > 0 come first, each round holding the pages written since the one
// before. Then, frozen, the rest as in any image: its pages sections (round 0) carry
// the pages written since the last round, and one keptPages section lists every other
// page the job has, whose contents are those of the latest pre-copy round holding it.
// Pre-copy data for a page keptPages does not list is dropped (the page was unmapped,
// or zapped and the file's page shows through again). Every integer is little-endian (x86_64 is the only architecture today;
// the preamble's machine field refuses the others). Checksums are XXH3-64.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mig::image {

inline constexpr char kMagic[8] = {'M', 'I', 'G', 'I', 'M', 'A', 'G', 'E'};
// Version 2 added the pre-copy sections (Pages.precopyRound, keptPages) and the tree
// and member sections (a checkpoint of a process tree); images without them are still
// written as version 2, and version 1 images (one process) are still read. A reader of
// version 1 refuses version 2 with its "format version 2 is not supported" line.
inline constexpr uint32_t kFormatVersion = 2;
inline constexpr uint32_t kOldestFormatVersion = 1;
inline constexpr uint32_t kMachineX86_64 = 62;  // ELF EM_X86_64
inline constexpr uint32_t kSectionTag = 0x4345534d;   // "MSEC"
inline constexpr uint64_t kTrailerTag = 0x4154414447494d;  // "MIGDATA"
inline constexpr uint64_t kDataAlign = 4096;

// Limits that keep a corrupt length field from turning into a huge allocation
// or a read that never ends.
inline constexpr uint32_t kMaxMetaBytes = 64u << 20;
inline constexpr uint64_t kMaxDataBytes = 1ull << 40;
inline constexpr uint32_t kMaxSections = 1u << 20;

enum class SectionType : uint16_t {
  header = 1,
  memoryMap = 2,
  pages = 3,
  threads = 4,
  process = 5,
  files = 6,
  keptPages = 7,  // pages whose contents an earlier pre-copy pages section holds (no data)
  tree = 8,       // the members of a process tree, once, after the header
  member = 9,     // starts the sections (process, threads, files, memory) of one tree member
  parent = 13,    // an incremental image's parent in its chain (image_chain.h): its keptPages
                  // take their contents from the parent's chain
  ipc = 10,       // shared memory between members, System V IPC objects (image.capnp Ipc)
  pageSums = 12,  // XXH3-64 of each page of the pages section just before it: a Pages message
                  // with the same runs, data one uint64 per page in order. Written for pages
                  // sections of 1 MiB or more; a lazy restart checks each page as it places it
  postcopyPages = 15,  // a post-copy hop's pages not in the image (no data): the destination's
                       // page server fetches them from the sender (resources/network_page_source.h)
  end = 0xffff,
};

// Name of a section type for messages and tools ("pages"), or nullptr if unknown.
const char* sectionTypeName(uint16_t type);

struct Preamble {
  char magic[8];
  uint32_t version;
  uint32_t machine;
};
static_assert(sizeof(Preamble) == 16);

struct SectionFrame {
  uint32_t tag;        // kSectionTag
  uint16_t type;       // SectionType
  uint16_t flags;      // reserved, 0
  uint32_t index;      // 0 for the header, then 1, 2, ...: catches dropped or repeated sections
  uint32_t metaLen;    // bytes of Cap'n Proto metadata that follow, multiple of 8
  uint64_t dataLen;    // bytes of raw data after the metadata and padding
  uint64_t metaHash;   // XXH3-64 of the metadata bytes
  uint64_t reserved;   // 0
  uint64_t frameHash;  // XXH3-64 of the 40 bytes above
};
static_assert(sizeof(SectionFrame) == 48);

struct DataTrailer {
  uint64_t tag;       // kTrailerTag
  uint64_t dataHash;  // XXH3-64 of the raw data
};
static_assert(sizeof(DataTrailer) == 16);

inline constexpr uint64_t alignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Where each part of a section lies in the stream, given the frame's offset.
struct SectionLayout {
  uint64_t frameOffset;
  uint64_t metaOffset;
  uint64_t dataOffset;     // == end of padding; meaningful when dataLen > 0
  uint64_t trailerOffset;  // meaningful when dataLen > 0
  uint64_t endOffset;      // where the next section's frame starts

  static SectionLayout of(uint64_t frameOffset, uint32_t metaLen, uint64_t dataLen) {
    SectionLayout l{};
    l.frameOffset = frameOffset;
    l.metaOffset = frameOffset + sizeof(SectionFrame);
    uint64_t afterMeta = l.metaOffset + metaLen;
    if (dataLen == 0) {
      l.dataOffset = l.trailerOffset = l.endOffset = afterMeta;
    } else {
      l.dataOffset = alignUp(afterMeta, kDataAlign);
      l.trailerOffset = alignUp(l.dataOffset + dataLen, 8);
      l.endOffset = l.trailerOffset + sizeof(DataTrailer);
    }
    return l;
  }
};

}  // namespace mig::image
