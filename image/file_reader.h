// Random-access reader of an image file: indexes every section's frame and
// metadata on open (without reading page data), then serves metadata and data of
// any section, and verifies data checksums on request. The restart path uses it
// to build a restore plan whose page data is mmap()ed straight from the file.
#pragma once

#include "image/image.capnp.h"
#include "image/section_codec.h"

#include <kj/vector.h>

namespace mig::image {

class Checksummer;

class FileReader {
 public:
  // Opens and indexes `path`; throws with a one-line reason on any defect
  // except in page data, which verify() checks.
  explicit FileReader(kj::StringPtr path);
  // The same for the image open on `fd`, which it takes over; `path` names it in
  // messages (a page server handed the image by its restart: resources/lazy_pages.cc).
  FileReader(int fd, kj::StringPtr path);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  kj::StringPtr path() const { return path_; }
  int fd() const { return fd_; }
  uint64_t fileSize() const { return size_; }

  schema::Header::Reader header() { return metaReader(0).getRoot<schema::Header>(); }

  // Every section, header first and End last.
  size_t sectionCount() const { return entries_.size(); }
  const SectionInfo& section(size_t i) const { return entries_[i].info; }
  // The first section of that type, if the image has one.
  kj::Maybe<size_t> firstSection(SectionType type) const;
  template <typename T>
  typename T::Reader meta(size_t i) { return metaReader(i).getRoot<T>(); }

  // A process tree's image (format version 2) has a tree section and, per live
  // member, a member section followed by that member's sections.
  bool isTree() const { return treeSection_ != 0; }
  schema::Tree::Reader tree() { return meta<schema::Tree>(treeSection_); }
  // From now on the reader shows only the header, the tree's ipc section (its System V
  // segments), the sections of the live member with virtual PID `vpid` and End: what the restart of one process reads. Throws
  // when the tree has no such live member. Call verifyAll() first: the others are
  // no longer visible.
  void keepOnlyMember(int32_t vpid);

  // Reads `len` bytes at `offset` within section i's data.
  void readData(size_t i, uint64_t offset, void* buf, size_t len) const;

  // Checks section i's data, padding and trailer; throws naming the section.
  void verify(size_t i) const;
  void verifyAll() const;

 private:
  bool hashMapped(const SectionInfo& info, Checksummer& hash) const;
  struct Entry {
    SectionInfo info;
    kj::Array<capnp::word> words;
    kj::Own<capnp::FlatArrayMessageReader> reader;
  };

  capnp::MessageReader& metaReader(size_t i) { return *entries_[i].reader; }
  size_t preadSome(void* buf, size_t len, uint64_t offset) const;
  void index();

  kj::String path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  kj::Vector<Entry> entries_;
  size_t treeSection_ = 0;  // 0: none (the header is section 0)
};

}  // namespace mig::image
